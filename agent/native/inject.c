/*
 * inject.c: RawInjector. inject(packet) hands a decrypted IPv4/IPv6 packet (header included) to the kernel as this
 * host's own, so it is delivered locally or routed to the LAN whatever the tunnel's IP family (it replaced the loopback
 * carrier's queue). Returns 0 or -errno. Kernel interface: raw(7) (IPPROTO_RAW implies IP_HDRINCL for IPv4) and
 * ipv6(7); the destination given to sendto is the packet's own.
 *
 * Batched: queue(packet) copies the packet into the injector's arena and flush() hands everything queued to the kernel
 * with one sendmmsg per run of one family, in order (a burst of decrypted packets costs one system call, not one
 * each). A full arena flushes first. flush() returns how many the kernel refused (the last errno is kept).
 */
#define _GNU_SOURCE
#include "ntmdp.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define INJ_ARENA (1 << 20)
#define INJ_MAX 512

typedef struct {
  int fd4, fd6;
  uint8_t *arena;
  size_t used;
  int count;
  struct mmsghdr msgs[INJ_MAX];
  struct iovec iov[INJ_MAX];
  union {
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
  } to[INJ_MAX];
  uint8_t family[INJ_MAX];
  double stats[4]; /* queued, flushes, refused, last errno */
} injector;

/* The destination sendto/sendmmsg needs: the packet's own. Its family (4, 6), or 0 when the packet is neither or that
 * family has no socket here. */
static int destination(const injector *j, const uint8_t *p, size_t len, void *to) {
  if (len >= 20 && (p[0] >> 4) == 4 && j->fd4 >= 0) {
    struct sockaddr_in *a = to;
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    memcpy(&a->sin_addr, p + 16, 4);
    return 4;
  }
  if (len >= 40 && (p[0] >> 4) == 6 && j->fd6 >= 0) {
    struct sockaddr_in6 *a = to;
    memset(a, 0, sizeof *a);
    a->sin6_family = AF_INET6;
    memcpy(&a->sin6_addr, p + 24, 16);
    return 6;
  }
  return 0;
}

/* Sends everything queued, in order; how many the kernel refused. */
static int inj_flush_all(injector *j) {
  int refused = 0;
  for (int i = 0; i < j->count;) {
    int fam = j->family[i], end = i;
    while (end < j->count && j->family[end] == fam) end++;
    int fd = fam == 4 ? j->fd4 : j->fd6;
    while (i < end) {
      int r = sendmmsg(fd, j->msgs + i, (unsigned)(end - i), 0);
      if (r <= 0) {
        /* The first message was refused (a route missing, a full buffer): count it and go on with the next. */
        j->stats[3] = r < 0 ? errno : EIO;
        refused++;
        i++;
      } else i += r;
    }
  }
  j->stats[1]++;
  j->stats[2] += refused;
  j->count = 0;
  j->used = 0;
  return refused;
}

static void inj_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  injector *j = data;
  if (j->fd4 >= 0) close(j->fd4);
  if (j->fd6 >= 0) close(j->fd6);
  free(j->arena);
  free(j);
}

static napi_value inj_new(napi_env env, napi_callback_info info) {
  napi_value self;
  size_t argc = 0;
  CHECK(napi_get_cb_info(env, info, &argc, NULL, &self, NULL));
  injector *j = calloc(1, sizeof *j);
  if (!j) return throw_errno(env, "ntmdp: calloc", ENOMEM);
  j->arena = malloc(INJ_ARENA);
  if (!j->arena) {
    free(j);
    return throw_errno(env, "ntmdp: malloc", ENOMEM);
  }
  j->fd4 = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
  j->fd6 = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
  if (j->fd4 < 0 && j->fd6 < 0) {
    int e = errno;
    free(j->arena);
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
  if (j->count) inj_flush_all(j); /* what was queued goes first */
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

/* queue(packet): 0, or -errno (-EINVAL: not an IP packet of a family with a socket here) */
static napi_value inj_queue(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], ret;
  injector *j = unwrap_this(env, info, &argc, argv);
  uint8_t *p;
  size_t len;
  if (!j || argc < 1 || bytes_of(env, argv[0], &p, &len)) {
    napi_throw_type_error(env, NULL, "ntmdp: queue(Uint8Array)");
    return NULL;
  }
  tcp_mss_learn(p, len);
  int rc = 0;
  if (len > 65535) rc = -EMSGSIZE;
  else {
    if (j->count == INJ_MAX || j->used + len > INJ_ARENA) inj_flush_all(j);
    int i = j->count;
    int fam = destination(j, p, len, &j->to[i]);
    if (fam == 0) rc = -EINVAL;
    else {
      memcpy(j->arena + j->used, p, len);
      j->iov[i] = (struct iovec){.iov_base = j->arena + j->used, .iov_len = len};
      j->msgs[i].msg_hdr = (struct msghdr){
          .msg_name = &j->to[i], .msg_namelen = fam == 4 ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6), .msg_iov = &j->iov[i], .msg_iovlen = 1};
      j->family[i] = (uint8_t)fam;
      j->used += (len + 7) & ~(size_t)7;
      j->count++;
      j->stats[0]++;
    }
  }
  napi_create_int32(env, rc, &ret);
  return ret;
}

/* flush(): how many queued packets the kernel refused */
static napi_value inj_flush(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  napi_value ret;
  injector *j = unwrap_this(env, info, &argc, NULL);
  if (!j) return NULL;
  napi_create_int32(env, j->count ? inj_flush_all(j) : 0, &ret);
  return ret;
}

static napi_value inj_stats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  injector *j = unwrap_this(env, info, &argc, NULL);
  if (!j) return NULL;
  static const char *const names[4] = {"queued", "flushes", "refused", "lastErrno"};
  return stats_object(env, names, j->stats, 4);
}

void inject_register(napi_env env, napi_value exports) {
  static const napi_property_descriptor methods[] = {
      {"inject", NULL, inj_inject, NULL, NULL, NULL, napi_default, NULL},
      {"queue", NULL, inj_queue, NULL, NULL, NULL, napi_default, NULL},
      {"flush", NULL, inj_flush, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, inj_stats, NULL, NULL, NULL, napi_default, NULL},
  };
  define_class(env, exports, "RawInjector", inj_new, methods, sizeof methods / sizeof methods[0]);
}
