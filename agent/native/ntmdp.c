/*
 * ntmdp: the data plane's native fast path (N-API, C). Three small pieces the TypeScript data plane cannot do fast
 * enough by itself; each has a TypeScript reference beside it that the tests compare it with:
 *
 *  - NfqSource: NFQUEUE (libnetfilter_queue) read in bursts. One event-loop wakeup drains every queued packet into a
 *    shared arena and calls JavaScript once per burst; verdicts come back in a shared array and go out as one batch
 *    verdict when they all agree (node-nfqueue reads one packet per wakeup and builds JS objects for each).
 *  - RawInjector: hands a decrypted IP packet to the kernel as this host's own (raw socket, header included), so it is
 *    delivered locally or routed to the LAN whatever the tunnel's IP family (replaces the loopback carrier's queue).
 *  - UdpSocket: the terminal's one UDP socket, read with recvmmsg in bursts (UDP GRO runs split here) and written with
 *    sendto, or queued and flushed with one sendmmsg of UDP GSO runs.
 *  - keccak256: Keccak-256 (Ethereum's), for IDs, Node Transaction digests and the registry chain.
 *  - ChaChaPoly: ChaCha20-Poly1305 (RFC 8439) with WireGuard's nonce layout on one reused OpenSSL context; node:crypto
 *    builds a new cipher object per packet.
 *
 * Threading: everything runs on the JS thread that created it (uv_poll on the default loop). Buffers passed in are
 * borrowed for the duration of the call only.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libnetfilter_queue/libnetfilter_queue.h>
#include <openssl/evp.h>

#define CHECK(call)                                                                                                  \
  do {                                                                                                                \
    if ((call) != napi_ok) {                                                                                          \
      napi_throw_error(env, NULL, "ntmdp: N-API call failed: " #call);                                                \
      return NULL;                                                                                                    \
    }                                                                                                                 \
  } while (0)

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, NULL, msg);
  return NULL;
}

/* ------------------------------------------------------------------------------------------------------------------
 * NfqSource
 *
 * meta, per packet (int32 × META): arena offset, length, packet id, mark, in ifindex, out ifindex.
 * verdicts, per packet (int32 × VERD): verdict (0 drop, 1 accept, 2 accept with the payload at out[offset..+length],
 * 3 deferred: settled later with settle()), out offset, out length, mark (0: unchanged).
 */
#define META 6
#define VERD 4

typedef struct {
  napi_env env;
  struct nfq_handle *h;
  struct nfq_q_handle *qh;
  int fd;
  uv_poll_t poll;
  int polling;
  napi_ref cb;
  napi_async_context actx;
  uint8_t *arena;
  size_t arena_size, arena_used;
  int32_t *meta;
  int32_t *verdicts;
  uint8_t *out;
  size_t out_size;
  int max_batch, count;
  char *rx;
  size_t rx_size;
  int deferred; /* packets deferred and not settled yet: batch verdicts must not cover them */
  double stats[8]; /* received, bursts, batch verdicts, single verdicts, overflow drops, enobufs, errors, max burst */
  int closed;
  /* The uv_poll handle lives inside this struct: libuv holds it from uv_poll_init until its close callback ran, so the
   * struct is freed only when both that happened and JavaScript let go of the object (finalized). */
  int handle_live, finalized;
} nfqsrc;

static int on_nfq_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa, void *data) {
  (void)msg;
  nfqsrc *s = data;
  struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
  if (!ph) return 0;
  uint32_t id = ntohl(ph->packet_id);
  unsigned char *payload = NULL;
  int len = nfq_get_payload(nfa, &payload);
  s->stats[0]++;
  if (len < 0 || s->count >= s->max_batch || s->arena_used + (size_t)len > s->arena_size) {
    /* No room in this burst: the overlay fails closed rather than letting the packet pass unprocessed. */
    nfq_set_verdict(qh, id, NF_DROP, 0, NULL);
    s->stats[4]++;
    return 0;
  }
  memcpy(s->arena + s->arena_used, payload, (size_t)len);
  int32_t *m = s->meta + (size_t)s->count * META;
  m[0] = (int32_t)s->arena_used;
  m[1] = len;
  m[2] = (int32_t)id;
  m[3] = (int32_t)nfq_get_nfmark(nfa);
  m[4] = (int32_t)nfq_get_indev(nfa);
  m[5] = (int32_t)nfq_get_outdev(nfa);
  s->arena_used += ((size_t)len + 7) & ~(size_t)7;
  s->count++;
  return 0;
}

static void issue_verdicts(nfqsrc *s) {
  int n = s->count;
  int same = 1, first = s->verdicts[0];
  uint32_t max_id = 0;
  for (int i = 0; i < n; i++) {
    int v = s->verdicts[i * VERD];
    if (v != first || v > 1 || s->verdicts[i * VERD + 3] != 0) same = 0;
    uint32_t id = (uint32_t)s->meta[i * META + 2];
    if (id > max_id) max_id = id;
  }
  if (same && s->deferred == 0 && n > 1) {
    nfq_set_verdict_batch(s->qh, max_id, first == 1 ? NF_ACCEPT : NF_DROP);
    s->stats[2]++;
    return;
  }
  for (int i = 0; i < n; i++) {
    int32_t *v = s->verdicts + (size_t)i * VERD;
    uint32_t id = (uint32_t)s->meta[i * META + 2];
    if (v[0] == 3) {
      s->deferred++;
      continue;
    }
    const unsigned char *buf = NULL;
    uint32_t blen = 0;
    int verdict = v[0] == 0 ? NF_DROP : NF_ACCEPT;
    if (v[0] == 2 && v[1] >= 0 && v[2] > 0 && (size_t)v[1] + (size_t)v[2] <= s->out_size) {
      buf = s->out + v[1];
      blen = (uint32_t)v[2];
    } else if (v[0] == 2) {
      verdict = NF_DROP;
      s->stats[6]++;
    }
    if (v[3] != 0) nfq_set_verdict2(s->qh, id, verdict, (uint32_t)v[3], blen, buf);
    else nfq_set_verdict(s->qh, id, verdict, blen, buf);
    s->stats[3]++;
  }
}

static void on_poll(uv_poll_t *handle, int status, int events) {
  (void)events;
  nfqsrc *s = handle->data;
  if (s->closed || status < 0) return;
  s->count = 0;
  s->arena_used = 0;
  for (;;) {
    ssize_t r = recv(s->fd, s->rx, s->rx_size, MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == ENOBUFS) {
        s->stats[5]++;
        continue;
      }
      s->stats[6]++;
      break;
    }
    nfq_handle_packet(s->h, s->rx, (int)r);
    if (s->count >= s->max_batch) break;
  }
  if (s->count == 0) return;
  s->stats[1]++;
  if (s->count > s->stats[7]) s->stats[7] = s->count;
  napi_env env = s->env;
  /* Until JavaScript says otherwise, every packet is dropped (a throw fails closed). */
  for (int i = 0; i < s->count; i++) {
    s->verdicts[i * VERD] = 0;
    s->verdicts[i * VERD + 3] = 0;
  }
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, recv, argv[1], result;
  napi_get_reference_value(env, s->cb, &cb);
  napi_get_global(env, &recv); /* napi_make_callback needs an object as the receiver */
  napi_create_int32(env, s->count, &argv[0]);
  napi_status st = napi_make_callback(env, s->actx, recv, cb, 1, argv, &result);
  if (st != napi_ok) {
    const napi_extended_error_info *ei = NULL;
    napi_get_last_error_info(env, &ei);
    if (getenv("NTMDP_DEBUG")) fprintf(stderr, "ntmdp: callback failed: %d %s\n", (int)st, ei && ei->error_message ? ei->error_message : "");
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value ex;
      napi_get_and_clear_last_exception(env, &ex);
    }
    for (int i = 0; i < s->count; i++) s->verdicts[i * VERD] = 0;
    s->stats[6]++;
  }
  issue_verdicts(s);
  napi_close_handle_scope(env, scope);
}

static void on_poll_closed(uv_handle_t *h) {
  nfqsrc *s = h->data;
  s->handle_live = 0;
  if (s->finalized) {
    free(s->rx);
    free(s);
  }
}

static void nfq_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  nfqsrc *s = data;
  if (!s->closed) {
    s->closed = 1;
    if (s->polling) {
      uv_poll_stop(&s->poll);
      uv_close((uv_handle_t *)&s->poll, on_poll_closed);
    }
    if (s->qh) nfq_destroy_queue(s->qh);
    if (s->h) nfq_close(s->h);
  }
  s->finalized = 1;
  /* Still in libuv's hands (closing): on_poll_closed frees it. The arenas are owned by their ArrayBuffers. */
  if (s->handle_live) return;
  free(s->rx);
  free(s);
}

static void free_block(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static nfqsrc *unwrap_src(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *p = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok) return NULL;
  if (napi_unwrap(env, self, &p) != napi_ok) return NULL;
  return p;
}

/* new NfqSource(queue, maxBatch, arenaBytes, rcvbufBytes, queueMaxlen) */
static napi_value nfq_new(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], self;
  CHECK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  uint32_t queue = 0, max_batch = 256, arena = 1 << 20, rcvbuf = 8 << 20, maxlen = 4096;
  napi_get_value_uint32(env, argv[0], &queue);
  if (argc > 1) napi_get_value_uint32(env, argv[1], &max_batch);
  if (argc > 2) napi_get_value_uint32(env, argv[2], &arena);
  if (argc > 3) napi_get_value_uint32(env, argv[3], &rcvbuf);
  if (argc > 4) napi_get_value_uint32(env, argv[4], &maxlen);
  if (max_batch < 1 || max_batch > 65536 || arena < 65536) {
    napi_throw_range_error(env, NULL, "ntmdp: bad batch or arena size");
    return NULL;
  }
  nfqsrc *s = calloc(1, sizeof *s);
  if (!s) return throw_errno(env, "ntmdp: calloc", ENOMEM);
  s->env = env;
  s->max_batch = (int)max_batch;
  s->arena_size = arena;
  s->out_size = arena;
  s->rx_size = 0x10000 + 4096;
  s->arena = malloc(arena);
  s->out = malloc(arena);
  s->meta = calloc(max_batch, sizeof(int32_t) * META);
  s->verdicts = calloc(max_batch, sizeof(int32_t) * VERD);
  s->rx = malloc(s->rx_size);
  if (!s->arena || !s->out || !s->meta || !s->verdicts || !s->rx) return throw_errno(env, "ntmdp: malloc", ENOMEM);
  s->h = nfq_open();
  if (!s->h) return throw_errno(env, "ntmdp: nfq_open", errno);
  nfq_unbind_pf(s->h, AF_INET);
  nfq_bind_pf(s->h, AF_INET);
  nfq_unbind_pf(s->h, AF_INET6);
  nfq_bind_pf(s->h, AF_INET6);
  s->qh = nfq_create_queue(s->h, (uint16_t)queue, &on_nfq_packet, s);
  if (!s->qh) {
    int e = errno;
    nfq_close(s->h);
    s->h = NULL;
    return throw_errno(env, "ntmdp: nfq_create_queue (is another process reading this queue?)", e ? e : EBUSY);
  }
  if (nfq_set_mode(s->qh, NFQNL_COPY_PACKET, 0xffff) < 0) return throw_errno(env, "ntmdp: nfq_set_mode", errno);
  nfq_set_queue_maxlen(s->qh, maxlen);
  s->fd = nfq_fd(s->h);
  int one = 1;
  setsockopt(s->fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
  int rb = (int)rcvbuf;
  if (setsockopt(s->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rb, sizeof rb) < 0) setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
  CHECK(napi_wrap(env, self, s, nfq_free, NULL, NULL));

  napi_value ab_arena, ab_out, ab_meta, ab_verd, meta, verd, name;
  CHECK(napi_create_external_arraybuffer(env, s->arena, arena, free_block, NULL, &ab_arena));
  CHECK(napi_create_external_arraybuffer(env, s->out, arena, free_block, NULL, &ab_out));
  CHECK(napi_create_external_arraybuffer(env, s->meta, (size_t)max_batch * META * 4, free_block, NULL, &ab_meta));
  CHECK(napi_create_external_arraybuffer(env, s->verdicts, (size_t)max_batch * VERD * 4, free_block, NULL, &ab_verd));
  CHECK(napi_create_typedarray(env, napi_int32_array, (size_t)max_batch * META, ab_meta, 0, &meta));
  CHECK(napi_create_typedarray(env, napi_int32_array, (size_t)max_batch * VERD, ab_verd, 0, &verd));
  CHECK(napi_set_named_property(env, self, "arena", ab_arena));
  CHECK(napi_set_named_property(env, self, "out", ab_out));
  CHECK(napi_set_named_property(env, self, "meta", meta));
  CHECK(napi_set_named_property(env, self, "verdicts", verd));
  CHECK(napi_create_string_utf8(env, "ntmdp.nfq", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, NULL, name, &s->actx));
  return self;
}

/* start(callback(count)) */
static napi_value nfq_start(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  nfqsrc *s = unwrap_src(env, info, &argc, argv);
  if (!s || argc < 1) return NULL;
  if (s->closed) {
    napi_throw_error(env, NULL, "ntmdp: source is closed");
    return NULL;
  }
  if (s->cb) napi_delete_reference(env, s->cb);
  CHECK(napi_create_reference(env, argv[0], 1, &s->cb));
  if (!s->polling) {
    uv_loop_t *loop;
    napi_get_uv_event_loop(env, &loop);
    uv_poll_init(loop, &s->poll, s->fd);
    s->poll.data = s;
    s->handle_live = 1;
    uv_poll_start(&s->poll, UV_READABLE, on_poll);
    s->polling = 1;
  }
  return NULL;
}

/* settle(id, verdict, mark, payload?) for a deferred packet */
static napi_value nfq_settle(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  nfqsrc *s = unwrap_src(env, info, &argc, argv);
  if (!s || s->closed) return NULL;
  uint32_t id = 0, verdict = 0, mark = 0;
  napi_get_value_uint32(env, argv[0], &id);
  napi_get_value_uint32(env, argv[1], &verdict);
  napi_get_value_uint32(env, argv[2], &mark);
  void *data = NULL;
  size_t len = 0;
  if (argc > 3) {
    bool is_ta = false;
    napi_is_typedarray(env, argv[3], &is_ta);
    if (is_ta) {
      napi_typedarray_type t;
      napi_value ab;
      size_t off;
      napi_get_typedarray_info(env, argv[3], &t, &len, &data, &ab, &off);
    }
  }
  int v = verdict == 0 ? NF_DROP : NF_ACCEPT;
  if (mark) nfq_set_verdict2(s->qh, id, v, mark, (uint32_t)len, data);
  else nfq_set_verdict(s->qh, id, v, (uint32_t)len, data);
  if (s->deferred > 0) s->deferred--;
  s->stats[3]++;
  return NULL;
}

static napi_value nfq_close_js(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  nfqsrc *s = unwrap_src(env, info, &argc, NULL);
  if (!s || s->closed) return NULL;
  s->closed = 1;
  if (s->polling) {
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_poll_closed);
  }
  if (s->qh) nfq_destroy_queue(s->qh);
  if (s->h) nfq_close(s->h);
  s->qh = NULL;
  s->h = NULL;
  if (s->cb) {
    napi_delete_reference(env, s->cb);
    s->cb = NULL;
  }
  napi_async_destroy(env, s->actx);
  return NULL;
}

/* A JavaScript object { names[i]: stats[i] } for a source's or socket's stats(). */
static napi_value stats_object(napi_env env, const char *const *names, const double *stats, int n) {
  napi_value o, v;
  napi_create_object(env, &o);
  for (int i = 0; i < n; i++) {
    napi_create_double(env, stats[i], &v);
    napi_set_named_property(env, o, names[i], v);
  }
  return o;
}

static napi_value nfq_stats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  nfqsrc *s = unwrap_src(env, info, &argc, NULL);
  if (!s) return NULL;
  static const char *const names[8] = {"received", "bursts", "batchVerdicts", "singleVerdicts", "overflowDrops", "enobufs", "errors", "maxBurst"};
  napi_value o = stats_object(env, names, s->stats, 8), v;
  napi_create_int32(env, s->deferred, &v);
  napi_set_named_property(env, o, "deferredPending", v);
  return o;
}

/* ------------------------------------------------------------------------------------------------------------------
 * RawInjector: inject(packet) sends an IPv4/IPv6 packet (header included) as this host's own. Returns 0 or -errno. */
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

/* ------------------------------------------------------------------------------------------------------------------
 * ChaChaPoly: seal(key, counter, src, dst) → bytes written (src.length + 16); open(key, counter, src, dst) → plaintext
 * length or -1. Nonce = 4 zero bytes ‖ counter as uint64 little-endian (docs/protocol.md §3.3). `dst` may be `src`'s
 * memory only at the same offset. Empty AAD, or an optional fifth argument. */
typedef struct {
  EVP_CIPHER_CTX *enc, *dec;
} aead;

static void aead_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  aead *a = data;
  EVP_CIPHER_CTX_free(a->enc);
  EVP_CIPHER_CTX_free(a->dec);
  free(a);
}

static napi_value aead_new(napi_env env, napi_callback_info info) {
  napi_value self;
  size_t argc = 0;
  CHECK(napi_get_cb_info(env, info, &argc, NULL, &self, NULL));
  aead *a = calloc(1, sizeof *a);
  if (!a) return throw_errno(env, "ntmdp: calloc", ENOMEM);
  a->enc = EVP_CIPHER_CTX_new();
  a->dec = EVP_CIPHER_CTX_new();
  if (!a->enc || !a->dec || EVP_EncryptInit_ex(a->enc, EVP_chacha20_poly1305(), NULL, NULL, NULL) != 1 ||
      EVP_DecryptInit_ex(a->dec, EVP_chacha20_poly1305(), NULL, NULL, NULL) != 1) {
    napi_throw_error(env, NULL, "ntmdp: OpenSSL has no ChaCha20-Poly1305");
    return NULL;
  }
  CHECK(napi_wrap(env, self, a, aead_free, NULL, NULL));
  return self;
}

static int bytes_of(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  napi_typedarray_type t;
  napi_value ab;
  size_t off;
  void *d = NULL;
  if (napi_get_typedarray_info(env, v, &t, len, &d, &ab, &off) != napi_ok || t != napi_uint8_array) return -1;
  *data = d;
  return 0;
}

static napi_value aead_run(napi_env env, napi_callback_info info, int encrypt) {
  size_t argc = 5;
  napi_value argv[5], self, ret;
  CHECK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  aead *a = NULL;
  CHECK(napi_unwrap(env, self, (void **)&a));
  uint8_t *key, *src, *dst, *aad = NULL;
  size_t klen, slen, dlen, alen = 0;
  double counter = 0;
  napi_valuetype aad_type = napi_undefined;
  if (argc > 4) napi_typeof(env, argv[4], &aad_type);
  int has_aad = argc > 4 && aad_type != napi_undefined && aad_type != napi_null;
  if (argc < 4 || bytes_of(env, argv[0], &key, &klen) || klen != 32 || napi_get_value_double(env, argv[1], &counter) != napi_ok ||
      bytes_of(env, argv[2], &src, &slen) || bytes_of(env, argv[3], &dst, &dlen) || (has_aad && bytes_of(env, argv[4], &aad, &alen))) {
    napi_throw_type_error(env, NULL, "ntmdp: seal/open(key32, counter, src, dst[, aad])");
    return NULL;
  }
  if (counter < 0 || counter > 9007199254740991.0) {
    napi_throw_range_error(env, NULL, "ntmdp: counter out of range");
    return NULL;
  }
  uint8_t nonce[12] = {0};
  uint64_t c = (uint64_t)counter;
  for (int i = 0; i < 8; i++) nonce[4 + i] = (uint8_t)(c >> (8 * i));
  int out = -1, n = 0, f = 0;
  if (encrypt) {
    if (dlen < slen + 16) {
      napi_throw_range_error(env, NULL, "ntmdp: seal output too small");
      return NULL;
    }
    if (EVP_EncryptInit_ex(a->enc, NULL, NULL, key, nonce) == 1 && (alen == 0 || EVP_EncryptUpdate(a->enc, NULL, &n, aad, (int)alen) == 1) &&
        EVP_EncryptUpdate(a->enc, dst, &n, src, (int)slen) == 1 && EVP_EncryptFinal_ex(a->enc, dst + n, &f) == 1 &&
        EVP_CIPHER_CTX_ctrl(a->enc, EVP_CTRL_AEAD_GET_TAG, 16, dst + slen) == 1)
      out = (int)slen + 16;
  } else {
    if (slen < 16 || dlen < slen - 16) {
      napi_create_int32(env, -1, &ret);
      return ret;
    }
    size_t ct = slen - 16;
    uint8_t tag[16];
    memcpy(tag, src + ct, 16);
    if (EVP_DecryptInit_ex(a->dec, NULL, NULL, key, nonce) == 1 && (alen == 0 || EVP_DecryptUpdate(a->dec, NULL, &n, aad, (int)alen) == 1) &&
        EVP_DecryptUpdate(a->dec, dst, &n, src, (int)ct) == 1 && EVP_CIPHER_CTX_ctrl(a->dec, EVP_CTRL_AEAD_SET_TAG, 16, tag) == 1 &&
        EVP_DecryptFinal_ex(a->dec, dst + n, &f) == 1)
      out = (int)ct;
    else if (dlen >= ct)
      memset(dst, 0, ct); /* never leave unauthenticated plaintext behind */
  }
  napi_create_int32(env, out, &ret);
  return ret;
}

static napi_value aead_seal(napi_env env, napi_callback_info info) { return aead_run(env, info, 1); }
static napi_value aead_open(napi_env env, napi_callback_info info) { return aead_run(env, info, 0); }


/* ------------------------------------------------------------------------------------------------------------------
 * UdpSocket: one UDP socket (dual-stack "[::]:port", or IPv4), read with recvmmsg in bursts into a shared arena (one
 * JS call per burst) and written with synchronous sendto (no per-datagram request object, unlike node:dgram).
 * meta per datagram (int32 × UMETA): arena offset, length, port, family (4 or 6); addresses: 16 bytes each in `addrs`
 * (IPv4 as ::ffff:a.b.c.d).
 *
 * Segmentation offload (Linux ≥ 4.18 / 5.0): queue() collects datagrams and flush() sends them in one sendmmsg, each
 * run of equal-sized datagrams to one destination as a single UDP_SEGMENT (GSO) send: the stack, the routers' netfilter
 * and the links on the way see one packet per run instead of one per datagram, and the peer's socket, which has
 * UDP_GRO set, receives the run whole (split here into the datagrams it carries). A kernel or route that refuses GSO
 * gets the run as separate datagrams. Only the data path's bulk sends are queued; the TTL-limited sends are not. */
#define UMETA 4
/* Messages per recvmmsg: each slot is 64 KiB (a GRO'd run fills it), so this bounds the arena's resident size. */
#define UBATCH 32
/* Datagrams one GRO'd message can carry (the kernel's UDP_MAX_SEGMENTS: 64, 128 since Linux 6.x). */
#define UGRO_SEGS 128
#define UMAXD (UBATCH * UGRO_SEGS)
#define TXMAX 256
#define TXBYTES (1 << 20)
#define GSO_MAX_SEGS 64
/* Sum of one GSO send's datagrams: under the 65,535-byte IP packet with the IPv6 and UDP headers. */
#define GSO_MAX_BYTES 65000

typedef struct {
  uint32_t off, len;
  struct sockaddr_in6 to; /* a sockaddr_in on an IPv4 socket */
  socklen_t tolen;
} txent;

typedef struct {
  napi_env env;
  int fd;
  uv_poll_t poll;
  int polling, closed;
  int handle_live, finalized; /* as NfqSource's: freed when libuv and JavaScript are both done with it */
  napi_ref cb;
  napi_async_context actx;
  uint8_t *arena;
  size_t slot; /* bytes per datagram slot */
  int32_t *meta;
  uint8_t *addrs;
  int family_v6;
  int gro; /* UDP_GRO is on: a message may carry a run of datagrams */
  int gso; /* UDP_SEGMENT works (cleared at the first refusal of the kind that will not change) */
  uint8_t *txbuf;
  size_t txused;
  txent *tx;
  int ntx;
  double stats[8]; /* received, bursts, send errors, receive errors, GSO sends, GRO messages, queued, flushes */
} udpsock;

static void udp_release(udpsock *u) {
  free(u->txbuf);
  free(u->tx);
  free(u);
}

/* A socket that failed before JavaScript got it: nothing else refers to its buffers yet. */
static napi_value udp_abandon(udpsock *u, napi_value ret) {
  if (u->fd >= 0) close(u->fd);
  free(u->arena);
  free(u->meta);
  free(u->addrs);
  free(u->txbuf);
  free(u->tx);
  free(u);
  return ret;
}

static void on_udp_closed(uv_handle_t *h) {
  udpsock *u = h->data;
  close(u->fd);
  u->fd = -1;
  u->handle_live = 0;
  if (u->finalized) udp_release(u);
}

static void udp_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  udpsock *u = data;
  u->finalized = 1;
  if (!u->closed) {
    u->closed = 1;
    if (u->polling) {
      uv_poll_stop(&u->poll);
      uv_close((uv_handle_t *)&u->poll, on_udp_closed);
    } else if (u->fd >= 0) {
      close(u->fd);
      u->fd = -1;
    }
  }
  /* Still in libuv's hands (closing): on_udp_closed frees it. */
  if (u->handle_live) return;
  udp_release(u);
}

static void on_udp_poll(uv_poll_t *handle, int status, int events) {
  (void)events;
  udpsock *u = handle->data;
  if (u->closed || status < 0) return;
  struct mmsghdr msgs[UBATCH];
  struct iovec iov[UBATCH];
  struct sockaddr_in6 from[UBATCH];
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl[UBATCH];
  for (;;) {
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < UBATCH; i++) {
      iov[i].iov_base = u->arena + (size_t)i * u->slot;
      iov[i].iov_len = u->slot;
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &from[i];
      msgs[i].msg_hdr.msg_namelen = sizeof from[i];
      if (u->gro) {
        msgs[i].msg_hdr.msg_control = ctl[i].buf;
        msgs[i].msg_hdr.msg_controllen = sizeof ctl[i].buf;
      }
    }
    int n = recvmmsg(u->fd, msgs, UBATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) u->stats[3]++;
      return;
    }
    int kept = 0;
    for (int i = 0; i < n; i++) {
      if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
        u->stats[3]++;
        continue;
      }
      /* A GRO'd message is a run of datagrams of `seg` bytes each (the last may be shorter). */
      size_t len = msgs[i].msg_len, seg = len;
      if (u->gro) {
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
          if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int g;
            memcpy(&g, CMSG_DATA(c), sizeof g);
            if (g > 0 && (size_t)g < len) {
              seg = (size_t)g;
              u->stats[5]++;
            }
          }
        }
      }
      uint8_t a[16];
      int32_t port, fam;
      if (from[i].sin6_family == AF_INET6) {
        memcpy(a, &from[i].sin6_addr, 16);
        port = ntohs(from[i].sin6_port);
        fam = (a[0] == 0 && a[8] == 0 && a[10] == 0xff && a[11] == 0xff && a[1] == 0 && a[2] == 0 && a[3] == 0 && a[4] == 0 && a[5] == 0 &&
               a[6] == 0 && a[7] == 0 && a[9] == 0)
                  ? 4
                  : 6;
      } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&from[i];
        memset(a, 0, 10);
        a[10] = a[11] = 0xff;
        memcpy(a + 12, &s4->sin_addr, 4);
        port = ntohs(s4->sin_port);
        fam = 4;
      }
      /* One entry per datagram of the run; an empty datagram is one entry of length 0 (the handler counts it). */
      size_t off = 0;
      do {
        if (kept >= UMAXD) {
          u->stats[3]++; /* cannot happen within UDP_MAX_SEGMENTS; counted, never written past the arrays */
          break;
        }
        int32_t *m = u->meta + (size_t)kept * UMETA;
        memcpy(u->addrs + (size_t)kept * 16, a, 16);
        m[0] = (int32_t)((size_t)i * u->slot + off);
        m[1] = (int32_t)(len - off < seg ? len - off : seg);
        m[2] = port;
        m[3] = fam;
        kept++;
        off += seg;
      } while (off < len);
    }
    u->stats[0] += kept;
    u->stats[1]++;
    if (kept > 0) {
      napi_env env = u->env;
      napi_handle_scope scope;
      napi_open_handle_scope(env, &scope);
      napi_value cb, recv, argv[1], result;
      napi_get_reference_value(env, u->cb, &cb);
      napi_get_global(env, &recv);
      napi_create_int32(env, kept, &argv[0]);
      napi_status st = napi_make_callback(env, u->actx, recv, cb, 1, argv, &result);
      if (st != napi_ok) {
        const napi_extended_error_info *ei = NULL;
        napi_get_last_error_info(env, &ei);
        if (getenv("NTMDP_DEBUG")) fprintf(stderr, "ntmdp: udp callback failed: %d %s\n", (int)st, ei && ei->error_message ? ei->error_message : "");
        bool pending = false;
        napi_is_exception_pending(env, &pending);
        if (pending) {
          napi_value ex;
          napi_get_and_clear_last_exception(env, &ex);
        }
        u->stats[3]++;
      }
      napi_close_handle_scope(env, scope);
    }
    if (u->closed || n < UBATCH) return;
  }
}

/* new UdpSocket(address, port, rcvbuf, sndbuf): address "::" (dual-stack), an IPv6 or an IPv4 address. */
static napi_value udp_new(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], self;
  CHECK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  char addr[64] = {0};
  size_t alen = 0;
  uint32_t port = 0, rcvbuf = 4 << 20, sndbuf = 4 << 20;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], addr, sizeof addr, &alen) != napi_ok) {
    napi_throw_type_error(env, NULL, "ntmdp: UdpSocket(address, port[, rcvbuf, sndbuf])");
    return NULL;
  }
  napi_get_value_uint32(env, argv[1], &port);
  if (argc > 2) napi_get_value_uint32(env, argv[2], &rcvbuf);
  if (argc > 3) napi_get_value_uint32(env, argv[3], &sndbuf);
  udpsock *u = calloc(1, sizeof *u);
  if (!u) return throw_errno(env, "ntmdp: calloc", ENOMEM);
  u->env = env;
  u->fd = -1;
  u->slot = 65536;
  u->arena = malloc(u->slot * UBATCH);
  u->meta = calloc(UMAXD, sizeof(int32_t) * UMETA);
  u->addrs = calloc(UMAXD, 16);
  u->txbuf = malloc(TXBYTES);
  u->tx = calloc(TXMAX, sizeof(txent));
  if (!u->arena || !u->meta || !u->addrs || !u->txbuf || !u->tx) return udp_abandon(u, throw_errno(env, "ntmdp: malloc", ENOMEM));
  struct in_addr a4;
  struct in6_addr a6;
  int v4 = inet_pton(AF_INET, addr, &a4) == 1;
  if (!v4 && inet_pton(AF_INET6, addr, &a6) != 1) {
    napi_throw_type_error(env, NULL, "ntmdp: not an IP address");
    return udp_abandon(u, NULL);
  }
  u->family_v6 = !v4;
  u->fd = socket(v4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (u->fd < 0) return udp_abandon(u, throw_errno(env, "ntmdp: socket", errno));
  int zero = 0, rb = (int)rcvbuf, sb = (int)sndbuf;
  if (!v4) setsockopt(u->fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  if (setsockopt(u->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rb, sizeof rb) < 0) setsockopt(u->fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
  if (setsockopt(u->fd, SOL_SOCKET, SO_SNDBUFFORCE, &sb, sizeof sb) < 0) setsockopt(u->fd, SOL_SOCKET, SO_SNDBUF, &sb, sizeof sb);
  int r;
  if (v4) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr = a4};
    r = bind(u->fd, (struct sockaddr *)&sa, sizeof sa);
  } else {
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port), .sin6_addr = a6};
    r = bind(u->fd, (struct sockaddr *)&sa, sizeof sa);
  }
  if (r < 0) return udp_abandon(u, throw_errno(env, "ntmdp: bind", errno));
  int one = 1;
  u->gro = setsockopt(u->fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
  /* GSO only where the kernel knows UDP_SEGMENT (≥ 4.18): an older one would ignore the control message and send a
   * whole run as one datagram. */
  u->gso = !getenv("NTMDP_NO_GSO") && setsockopt(u->fd, SOL_UDP, UDP_SEGMENT, &zero, sizeof zero) == 0;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  getsockname(u->fd, (struct sockaddr *)&ss, &sl);
  uint32_t bound = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port) : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  CHECK(napi_wrap(env, self, u, udp_free, NULL, NULL));
  napi_value ab, meta, ab_meta, ab_addrs, addrs, pv, fv, name;
  CHECK(napi_create_external_arraybuffer(env, u->arena, u->slot * UBATCH, free_block, NULL, &ab));
  CHECK(napi_create_external_arraybuffer(env, u->meta, (size_t)UMAXD * UMETA * 4, free_block, NULL, &ab_meta));
  CHECK(napi_create_external_arraybuffer(env, u->addrs, (size_t)UMAXD * 16, free_block, NULL, &ab_addrs));
  CHECK(napi_create_typedarray(env, napi_int32_array, (size_t)UMAXD * UMETA, ab_meta, 0, &meta));
  CHECK(napi_create_typedarray(env, napi_uint8_array, (size_t)UMAXD * 16, ab_addrs, 0, &addrs));
  CHECK(napi_create_uint32(env, bound, &pv));
  CHECK(napi_create_int32(env, v4 ? 4 : 6, &fv));
  CHECK(napi_set_named_property(env, self, "arena", ab));
  CHECK(napi_set_named_property(env, self, "meta", meta));
  CHECK(napi_set_named_property(env, self, "addrs", addrs));
  CHECK(napi_set_named_property(env, self, "port", pv));
  CHECK(napi_set_named_property(env, self, "family", fv));
  CHECK(napi_create_string_utf8(env, "ntmdp.udp", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, NULL, name, &u->actx));
  return self;
}

static udpsock *unwrap_udp(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *p = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok) return NULL;
  if (napi_unwrap(env, self, &p) != napi_ok) return NULL;
  return p;
}

static napi_value udp_start(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  udpsock *u = unwrap_udp(env, info, &argc, argv);
  if (!u || argc < 1 || u->closed) return NULL;
  if (u->cb) napi_delete_reference(env, u->cb);
  CHECK(napi_create_reference(env, argv[0], 1, &u->cb));
  if (!u->polling) {
    uv_loop_t *loop;
    napi_get_uv_event_loop(env, &loop);
    uv_poll_init(loop, &u->poll, u->fd);
    u->poll.data = u;
    u->handle_live = 1;
    uv_poll_start(&u->poll, UV_READABLE, on_udp_poll);
    u->polling = 1;
  }
  return NULL;
}

/* send(data, address, port[, ttl]) → 0 or -errno. IPv4 addresses go out as ::ffff:a.b.c.d on a dual-stack socket. With
 * `ttl` (1..255) the datagram carries that TTL / hop limit (a control message: short-TTL hole punches, which open our
 * own NAT and die before reaching the peer's). */
/* The socket address for (address, port) on this socket; 0 when the family cannot be reached from it. */
static socklen_t udp_dest(const udpsock *u, const char *addr, uint32_t port, struct sockaddr_in6 *out, int *to_v4) {
  struct in_addr a4;
  struct in6_addr a6;
  memset(out, 0, sizeof *out);
  *to_v4 = 0;
  if (inet_pton(AF_INET, addr, &a4) == 1) {
    *to_v4 = 1;
    if (u->family_v6) {
      out->sin6_family = AF_INET6;
      out->sin6_port = htons((uint16_t)port);
      out->sin6_addr.s6_addr[10] = out->sin6_addr.s6_addr[11] = 0xff;
      memcpy(&out->sin6_addr.s6_addr[12], &a4, 4);
      return sizeof *out;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)out;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    s4->sin_addr = a4;
    return sizeof *s4;
  }
  if (u->family_v6 && inet_pton(AF_INET6, addr, &a6) == 1) {
    out->sin6_family = AF_INET6;
    out->sin6_port = htons((uint16_t)port);
    out->sin6_addr = a6;
    /* ::ffff:a.b.c.d written out leaves as IPv4 all the same (its TTL is IP_TTL's). */
    *to_v4 = IN6_IS_ADDR_V4MAPPED(&a6);
    return sizeof *out;
  }
  return 0;
}

/* The arguments send() and queue() share: (Uint8Array data, string address, uint32 port, …). 0, or -1 with a
 * TypeError thrown saying `usage`. */
static int udp_args(napi_env env, napi_value *argv, uint8_t **data, size_t *len, char addr[64], uint32_t *port, const char *usage) {
  size_t alen;
  memset(addr, 0, 64);
  if (bytes_of(env, argv[0], data, len) || napi_get_value_string_utf8(env, argv[1], addr, 64, &alen) != napi_ok ||
      napi_get_value_uint32(env, argv[2], port) != napi_ok) {
    napi_throw_type_error(env, NULL, usage);
    return -1;
  }
  return 0;
}

static void udp_flush(udpsock *u);

static napi_value udp_send(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], ret;
  udpsock *u = unwrap_udp(env, info, &argc, argv);
  if (!u || argc < 3) return NULL;
  static const char usage[] = "ntmdp: send(Uint8Array, address, port[, ttl])";
  uint8_t *data;
  size_t len;
  char addr[64];
  uint32_t port = 0, ttl = 0;
  if (udp_args(env, argv, &data, &len, addr, &port, usage)) return NULL;
  if ((argc > 3 && napi_get_value_uint32(env, argv[3], &ttl) != napi_ok) || ttl > 255) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  struct sockaddr_in6 ss;
  int to_v4 = 0;
  socklen_t sl = udp_dest(u, addr, port, &ss, &to_v4);
  /* What was queued before leaves before this one. */
  if (u->ntx > 0 && !u->closed) udp_flush(u);
  int rc;
  if (u->closed) rc = -EBADF;
  else if (sl == 0) rc = -EAFNOSUPPORT;
  else if (ttl == 0) rc = sendto(u->fd, data, len, 0, (struct sockaddr *)&ss, sl) < 0 ? -errno : 0;
  else {
    union {
      char buf[CMSG_SPACE(sizeof(int))];
      struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {.iov_base = data, .iov_len = len};
    struct msghdr mh = {.msg_name = &ss, .msg_namelen = sl, .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    int v = (int)ttl;
    /* IPv4 (also IPv4-mapped on a dual-stack socket) takes IP_TTL; IPv6 takes IPV6_HOPLIMIT. */
    c->cmsg_level = to_v4 ? IPPROTO_IP : IPPROTO_IPV6;
    c->cmsg_type = to_v4 ? IP_TTL : IPV6_HOPLIMIT;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &v, sizeof v);
    rc = sendmsg(u->fd, &mh, 0) < 0 ? -errno : 0;
  }
  if (rc < 0) u->stats[2]++;
  napi_create_int32(env, rc, &ret);
  return ret;
}

/* Sends everything queued: one sendmmsg, a GSO message per run of equal-sized datagrams to one destination. */
static void udp_flush(udpsock *u) {
  struct mmsghdr mm[TXMAX];
  struct iovec iov[TXMAX];
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } ctl[TXMAX];
  int first[TXMAX + 1]; /* message k carries queue entries first[k] .. first[k+1]-1 */
  int m = 0;
  memset(mm, 0, sizeof mm);
  for (int i = 0; i < u->ntx;) {
    const txent *e = &u->tx[i];
    int j = i + 1;
    size_t total = e->len;
    if (u->gso) {
      /* Equal sizes, one destination; a shorter datagram may end the run (GSO's last segment). */
      while (j < u->ntx && j - i < GSO_MAX_SEGS && u->tx[j].len <= e->len && u->tx[j].len > 0 && total + u->tx[j].len <= GSO_MAX_BYTES &&
             u->tx[j].tolen == e->tolen && memcmp(&u->tx[j].to, &e->to, e->tolen) == 0) {
        total += u->tx[j].len;
        j++;
        if (u->tx[j - 1].len < e->len) break;
      }
    }
    iov[m].iov_base = u->txbuf + e->off; /* entries are contiguous in txbuf */
    iov[m].iov_len = total;
    mm[m].msg_hdr.msg_name = (void *)&e->to;
    mm[m].msg_hdr.msg_namelen = e->tolen;
    mm[m].msg_hdr.msg_iov = &iov[m];
    mm[m].msg_hdr.msg_iovlen = 1;
    if (j - i > 1) {
      memset(&ctl[m], 0, sizeof ctl[m]);
      mm[m].msg_hdr.msg_control = ctl[m].buf;
      mm[m].msg_hdr.msg_controllen = sizeof ctl[m].buf;
      struct cmsghdr *c = CMSG_FIRSTHDR(&mm[m].msg_hdr);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t g = (uint16_t)e->len;
      memcpy(CMSG_DATA(c), &g, sizeof g);
    }
    first[m] = i;
    m++;
    i = j;
  }
  first[m] = u->ntx;
  for (int k = 0; k < m;) {
    int r = sendmmsg(u->fd, mm + k, (unsigned)(m - k), 0);
    if (r > 0) {
      for (int q = k; q < k + r; q++)
        if (first[q + 1] - first[q] > 1) u->stats[4]++;
      k += r;
      continue;
    }
    int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
      /* The socket's send buffer is full: the rest of this flush is dropped at once (counted), as a full queue drops,
       * rather than asked for again datagram by datagram. */
      u->stats[2] += (double)(u->ntx - first[k]);
      break;
    }
    if (first[k + 1] - first[k] > 1) {
      /* The run was refused as a GSO send: send its datagrams one by one, and stop asking when GSO is not there. */
      if (e == EIO || e == ENOPROTOOPT || e == EOPNOTSUPP) u->gso = 0;
      for (int q = first[k]; q < first[k + 1]; q++)
        if (sendto(u->fd, u->txbuf + u->tx[q].off, u->tx[q].len, 0, (struct sockaddr *)&u->tx[q].to, u->tx[q].tolen) < 0) u->stats[2]++;
    } else
      u->stats[2]++;
    k++;
  }
  u->stats[7]++;
  u->ntx = 0;
  u->txused = 0;
}

/* queue(data, address, port) → 0 or -errno: copies the datagram for the next flush() (which happens first when the
 * queue is full). Errors of the send itself are counted in stats().sendErrors. */
static napi_value udp_queue(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], ret;
  udpsock *u = unwrap_udp(env, info, &argc, argv);
  if (!u || argc < 3) return NULL;
  uint8_t *data;
  size_t len;
  char addr[64];
  uint32_t port = 0;
  if (udp_args(env, argv, &data, &len, addr, &port, "ntmdp: queue(Uint8Array, address, port)")) return NULL;
  int rc = 0;
  if (u->closed) rc = -EBADF;
  else if (len > 65535) rc = -EMSGSIZE;
  else {
    if (u->ntx >= TXMAX || u->txused + len > TXBYTES) udp_flush(u);
    txent *e = &u->tx[u->ntx];
    int to_v4;
    e->tolen = udp_dest(u, addr, port, &e->to, &to_v4);
    if (e->tolen == 0) rc = -EAFNOSUPPORT;
    else {
      memcpy(u->txbuf + u->txused, data, len);
      e->off = (uint32_t)u->txused;
      e->len = (uint32_t)len;
      u->txused += len;
      u->ntx++;
      u->stats[6]++;
    }
  }
  if (rc < 0) u->stats[2]++;
  napi_create_int32(env, rc, &ret);
  return ret;
}

static napi_value udp_flush_js(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  udpsock *u = unwrap_udp(env, info, &argc, NULL);
  if (u && !u->closed && u->ntx > 0) udp_flush(u);
  return NULL;
}

static napi_value udp_close(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  udpsock *u = unwrap_udp(env, info, &argc, NULL);
  if (!u || u->closed) return NULL;
  if (u->ntx > 0) udp_flush(u);
  u->closed = 1;
  if (u->cb) {
    napi_delete_reference(env, u->cb);
    u->cb = NULL;
  }
  napi_async_destroy(env, u->actx);
  if (u->polling) {
    uv_poll_stop(&u->poll);
    uv_close((uv_handle_t *)&u->poll, on_udp_closed);
  } else {
    close(u->fd);
    u->fd = -1;
  }
  return NULL;
}

static napi_value udp_stats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  udpsock *u = unwrap_udp(env, info, &argc, NULL);
  if (!u) return NULL;
  static const char *const names[8] = {"received", "bursts", "sendErrors", "receiveErrors", "gsoSends", "groMessages", "queued", "flushes"};
  return stats_object(env, names, u->stats, 8);
}


/* ------------------------------------------------------------------------------------------------------------------
 * keccak256(data, out): Keccak-256 as Ethereum uses it (the original Keccak padding 0x01…0x80, not FIPS 202's 0x06):
 * NTM IDs, Node Transaction digests and the registry's hash chain. Keccak-f[1600], rate 136 bytes. */
static const uint64_t KECCAK_RC[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL, 0x8000000080008000ULL, 0x000000000000808bULL,
    0x0000000080000001ULL, 0x8000000080008081ULL, 0x8000000000008009ULL, 0x000000000000008aULL, 0x0000000000000088ULL,
    0x0000000080008009ULL, 0x000000008000000aULL, 0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL,
    0x8000000000008003ULL, 0x8000000000008002ULL, 0x8000000000000080ULL, 0x000000000000800aULL, 0x800000008000000aULL,
    0x8000000080008081ULL, 0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL};
/* Rotation offsets and lane order of the rho and pi steps, walked along pi's cycle starting at lane 1. */
static const int KECCAK_ROT[24] = {1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44};
static const int KECCAK_PI[24] = {10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1};

#define ROTL64(x, n) (((x) << (n)) | ((x) >> (64 - (n))))

static void keccak_f1600(uint64_t a[25]) {
  for (int round = 0; round < 24; round++) {
    uint64_t c[5], t;
    for (int x = 0; x < 5; x++) c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
    for (int x = 0; x < 5; x++) {
      t = c[(x + 4) % 5] ^ ROTL64(c[(x + 1) % 5], 1);
      for (int y = 0; y < 25; y += 5) a[y + x] ^= t;
    }
    t = a[1];
    for (int i = 0; i < 24; i++) {
      int j = KECCAK_PI[i];
      uint64_t b = a[j];
      a[j] = ROTL64(t, KECCAK_ROT[i]);
      t = b;
    }
    for (int y = 0; y < 25; y += 5) {
      for (int x = 0; x < 5; x++) c[x] = a[y + x];
      for (int x = 0; x < 5; x++) a[y + x] = c[x] ^ (~c[(x + 1) % 5] & c[(x + 2) % 5]);
    }
    a[0] ^= KECCAK_RC[round];
  }
}

static void keccak256(const uint8_t *in, size_t len, uint8_t out[32]) {
  uint64_t a[25] = {0};
  const size_t rate = 136;
  uint8_t block[136];
  for (;;) {
    size_t n = len < rate ? len : rate;
    memset(block, 0, rate);
    memcpy(block, in, n);
    if (n < rate) {
      block[n] ^= 0x01;
      block[rate - 1] ^= 0x80;
    }
    for (size_t i = 0; i < rate / 8; i++) {
      uint64_t w = 0;
      for (int b = 7; b >= 0; b--) w = (w << 8) | block[i * 8 + (size_t)b];
      a[i] ^= w;
    }
    keccak_f1600(a);
    if (n < rate) break;
    in += rate;
    len -= rate;
    /* A message that fills its last block exactly gets one more block holding only the padding. */
  }
  for (int i = 0; i < 4; i++)
    for (int b = 0; b < 8; b++) out[i * 8 + b] = (uint8_t)(a[i] >> (8 * b));
}

static napi_value keccak_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *in, *out;
  size_t ilen, olen;
  if (argc < 2 || bytes_of(env, argv[0], &in, &ilen) || bytes_of(env, argv[1], &out, &olen) || olen < 32) {
    napi_throw_type_error(env, NULL, "ntmdp: keccak256(Uint8Array, out32)");
    return NULL;
  }
  keccak256(in, ilen, out);
  return NULL;
}

/* ------------------------------------------------------------------------------------------------------------------ */

static napi_value define(napi_env env, napi_value exports, const char *name, napi_callback ctor, const napi_property_descriptor *props,
                         size_t n) {
  napi_value cls;
  if (napi_define_class(env, name, NAPI_AUTO_LENGTH, ctor, NULL, n, props, &cls) != napi_ok) return NULL;
  napi_set_named_property(env, exports, name, cls);
  return cls;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor nfq[] = {
      {"start", NULL, nfq_start, NULL, NULL, NULL, napi_default, NULL},
      {"settle", NULL, nfq_settle, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, nfq_close_js, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, nfq_stats, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_property_descriptor inj[] = {{"inject", NULL, inj_inject, NULL, NULL, NULL, napi_default, NULL}};
  napi_property_descriptor ae[] = {
      {"seal", NULL, aead_seal, NULL, NULL, NULL, napi_default, NULL},
      {"open", NULL, aead_open, NULL, NULL, NULL, napi_default, NULL},
  };
  define(env, exports, "NfqSource", nfq_new, nfq, 4);
  define(env, exports, "RawInjector", inj_new, inj, 1);
  define(env, exports, "ChaChaPoly", aead_new, ae, 2);
  napi_property_descriptor ud[] = {
      {"start", NULL, udp_start, NULL, NULL, NULL, napi_default, NULL},
      {"send", NULL, udp_send, NULL, NULL, NULL, napi_default, NULL},
      {"queue", NULL, udp_queue, NULL, NULL, NULL, napi_default, NULL},
      {"flush", NULL, udp_flush_js, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, udp_close, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, udp_stats, NULL, NULL, NULL, napi_default, NULL},
  };
  define(env, exports, "UdpSocket", udp_new, ud, 6);
  napi_value kf;
  napi_create_function(env, "keccak256", NAPI_AUTO_LENGTH, keccak_js, NULL, &kf);
  napi_set_named_property(env, exports, "keccak256", kf);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
