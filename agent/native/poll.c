/*
 * poll.c: the one way the addon's sockets reach JavaScript. The socket (NFQUEUE's netlink socket, the UDP socket) is
 * polled by libuv on the default loop; when it is readable the owner drains it into its arena and calls JavaScript
 * once with the count (napi_make_callback, so async_hooks and the microtask queue behave as for any I/O callback).
 * libuv: docs.libuv.org/en/v1.x/poll.html; N-API: nodejs.org/api/n-api.html#napi_make_callback.
 */
#include "ntmdp.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

napi_status poller_init(poller *p, napi_env env, const char *resource) {
  napi_value name;
  napi_status st = napi_create_string_utf8(env, resource, NAPI_AUTO_LENGTH, &name);
  if (st != napi_ok) return st;
  return napi_async_init(env, NULL, name, &p->actx);
}

napi_status poller_start(poller *p, napi_value cb, void *owner, uv_poll_cb on_readable) {
  napi_env env = p->env;
  if (p->cb) {
    napi_delete_reference(env, p->cb);
    p->cb = NULL;
  }
  napi_status st = napi_create_reference(env, cb, 1, &p->cb);
  if (st != napi_ok) return st;
  if (!p->polling) {
    uv_loop_t *loop;
    napi_get_uv_event_loop(env, &loop);
    uv_poll_init(loop, &p->handle, p->fd);
    p->handle.data = owner;
    p->handle_live = 1;
    uv_poll_start(&p->handle, UV_READABLE, on_readable);
    p->polling = 1;
  }
  return napi_ok;
}

void poller_stop(poller *p, uv_close_cb on_closed) {
  if (!p->polling) return;
  uv_poll_stop(&p->handle);
  uv_close((uv_handle_t *)&p->handle, on_closed);
}

void poller_release(poller *p) {
  if (p->cb) {
    napi_delete_reference(p->env, p->cb);
    p->cb = NULL;
  }
  napi_async_destroy(p->env, p->actx);
}

int poller_call(poller *p, int count, const char *what) { return poller_call2(p, count, -1, what); }

int poller_call2(poller *p, int count, int arg, const char *what) {
  napi_env env = p->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, recv, argv[2], result;
  napi_get_reference_value(env, p->cb, &cb);
  napi_get_global(env, &recv); /* napi_make_callback needs an object as the receiver */
  napi_create_int32(env, count, &argv[0]);
  if (arg >= 0) napi_create_int32(env, arg, &argv[1]);
  napi_status st = napi_make_callback(env, p->actx, recv, cb, arg >= 0 ? 2 : 1, argv, &result);
  if (st != napi_ok) {
    const napi_extended_error_info *ei = NULL;
    napi_get_last_error_info(env, &ei);
    if (getenv("NTMDP_DEBUG")) fprintf(stderr, "ntmdp: %s failed: %d %s\n", what, (int)st, ei && ei->error_message ? ei->error_message : "");
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value ex;
      napi_get_and_clear_last_exception(env, &ex);
    }
  }
  napi_close_handle_scope(env, scope);
  return st == napi_ok ? 0 : -1;
}
