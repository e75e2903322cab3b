/*
 * inject.c: RawInjector. inject(packet) hands a decrypted IPv4/IPv6 packet (header included) to the kernel as this
 * host's own, so it is delivered locally or routed to the LAN whatever the tunnel's IP family (it replaced the loopback
 * carrier's queue). Returns 0 or -errno. Kernel interface: raw(7) (IPPROTO_RAW implies IP_HDRINCL for IPv4) and
 * ipv6(7); the destination given to sendto is the packet's own.
 */
#define _GNU_SOURCE
#include "ntmdp.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
  int fd4, fd6;
} injector;

static void inj_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  injector *j = data;
  if (j->fd4 >= 0) close(j->fd4);
  if (j->fd6 >= 0) close(j->fd6);
  free(j);
}

static napi_value inj_new(napi_env env, napi_callback_info info) {
  napi_value self;
  size_t argc = 0;
  CHECK(napi_get_cb_info(env, info, &argc, NULL, &self, NULL));
  injector *j = calloc(1, sizeof *j);
  if (!j) return throw_errno(env, "ntmdp: calloc", ENOMEM);
  j->fd4 = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
  j->fd6 = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
  if (j->fd4 < 0 && j->fd6 < 0) {
    int e = errno;
    free(j);
    return throw_errno(env, "ntmdp: raw socket (needs CAP_NET_RAW)", e);
  }
  CHECK(napi_wrap(env, self, j, inj_free, NULL, NULL));
  return self;
}

static napi_value inj_inject(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], self, ret;
  CHECK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  injector *j = NULL;
  CHECK(napi_unwrap(env, self, (void **)&j));
  napi_typedarray_type t;
  size_t len = 0, off = 0;
  void *data = NULL;
  napi_value ab;
  if (argc < 1 || napi_get_typedarray_info(env, argv[0], &t, &len, &data, &ab, &off) != napi_ok) {
    napi_throw_type_error(env, NULL, "ntmdp: inject(Uint8Array)");
    return NULL;
  }
  const uint8_t *p = data;
  int rc;
  /* A SYN going to the LAN (or this host) tells what the segments cut from its peer's GSO packets may carry (gso.c). */
  tcp_mss_learn(p, len);
  if (len >= 20 && (p[0] >> 4) == 4 && j->fd4 >= 0) {
    struct sockaddr_in to = {.sin_family = AF_INET};
    memcpy(&to.sin_addr, p + 16, 4);
    rc = sendto(j->fd4, p, len, 0, (struct sockaddr *)&to, sizeof to) < 0 ? -errno : 0;
  } else if (len >= 40 && (p[0] >> 4) == 6 && j->fd6 >= 0) {
    struct sockaddr_in6 to = {.sin6_family = AF_INET6};
    memcpy(&to.sin6_addr, p + 24, 16);
    rc = sendto(j->fd6, p, len, 0, (struct sockaddr *)&to, sizeof to) < 0 ? -errno : 0;
  } else {
    rc = -EINVAL;
  }
  napi_create_int32(env, rc, &ret);
  return ret;
}

void inject_register(napi_env env, napi_value exports) {
  static const napi_property_descriptor methods[] = {{"inject", NULL, inj_inject, NULL, NULL, NULL, napi_default, NULL}};
  define_class(env, exports, "RawInjector", inj_new, methods, sizeof methods / sizeof methods[0]);
}
