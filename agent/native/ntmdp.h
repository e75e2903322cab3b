/*
 * ntmdp.h: what the units of the native addon share: N-API error helpers, argument parsing, the poll helper that wires
 * a socket into libuv and calls JavaScript once per burst, and each unit's registration function (module.c calls
 * them). One unit per file:
 *
 *   nfqueue.c  NfqSource    NFQUEUE read in bursts, verdicts in batches
 *   gso.c                   TCP segmentation of GSO packets from NFQUEUE (as TSO does), partial checksums completed
 *   inject.c   RawInjector  a decrypted IP packet handed to the kernel as this host's own
 *   tun.c      TunWriter    decrypted TCP segments of a flow coalesced (as GRO does), written to a TUN with a vnet header
 *   udp.c      UdpSocket    recvmmsg / sendmmsg, UDP GSO and GRO, per-datagram TTL
 *   rxopen.c   rxKey*       received DATA opened on a thread of its own, ahead of JavaScript (the receive keys by index)
 *   aead.c     ChaChaPoly   ChaCha20-Poly1305 (RFC 8439) on one reused OpenSSL context
 *   keccak.c   keccak256    Keccak-256 as Ethereum uses it
 *   hmac.c     hmacSha256   HMAC-SHA256 in one OpenSSL call (a flood's mac1 checks and cookies)
 *   poll.c                  the poll helper (below)
 *   common.c                errors, stats objects, arenas handed to JavaScript, class definitions
 *   module.c                the addon's exports
 *
 * Threading: everything runs on the JS thread that created it (uv_poll on the default loop), except a UdpSocket's
 * opening thread (rxopen.c, which says what it shares and how). Buffers passed in are borrowed for the duration of
 * the call only.
 */
#ifndef NTMDP_H
#define NTMDP_H

#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* In a function returning napi_value: throws and returns NULL when an N-API call fails. */
#define CHECK(call)                                                                                                  \
  do {                                                                                                                \
    if ((call) != napi_ok) {                                                                                          \
      napi_throw_error(env, NULL, "ntmdp: N-API call failed: " #call);                                                \
      return NULL;                                                                                                    \
    }                                                                                                                 \
  } while (0)

/* Throws an Error "`what`: strerror(err)"; returns NULL for the caller to return. */
napi_value throw_errno(napi_env env, const char *what, int err);

/* A JavaScript object { names[i]: stats[i] } for a source's or socket's stats(). */
napi_value stats_object(napi_env env, const char *const *names, const double *stats, int n);

/* this[name] = an ArrayBuffer over the malloc'd `block`, which JavaScript owns from then on (freed when collected). */
napi_status expose_buffer(napi_env env, napi_value self, const char *name, void *block, size_t bytes);
/* this[name] = an Int32Array or a Uint8Array (`type`) of `length` elements over the malloc'd `block`, owned likewise. */
napi_status expose_array(napi_env env, napi_value self, const char *name, void *block, size_t length, napi_typedarray_type type);

/* Defines class `name` with methods `props` on `exports`; the class, or NULL. */
napi_value define_class(napi_env env, napi_value exports, const char *name, napi_callback ctor, const napi_property_descriptor *props,
                        size_t n);

/* The bytes of a Uint8Array (borrowed: valid during this call); 0, or -1 when `v` is not one. Inline: the AEAD and the
 * UDP sends call it per packet. */
static inline int bytes_of(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  napi_typedarray_type t;
  napi_value ab;
  size_t off;
  void *d = NULL;
  if (napi_get_typedarray_info(env, v, &t, len, &d, &ab, &off) != napi_ok || t != napi_uint8_array) return -1;
  *data = d;
  return 0;
}

/* A method's arguments (up to *argc into argv) and the native object wrapped in `this`; NULL when it has none. */
static inline void *unwrap_this(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *p = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok) return NULL;
  if (napi_unwrap(env, self, &p) != napi_ok) return NULL;
  return p;
}

/*
 * The poll helper: a readable socket wired into the event loop, and the JavaScript callback it calls once per burst.
 * Embedded in its owner (NfqSource, UdpSocket), whose memory must outlive the uv handle: libuv holds `handle` from
 * poller_start until the close callback given to poller_stop ran (handle_live), so the owner is freed only when that
 * happened and JavaScript let go of it (finalized).
 */
typedef struct {
  napi_env env;
  int fd;
  uv_poll_t handle; /* handle.data: the owner */
  int polling;      /* uv_poll_init done, uv_close not asked yet */
  int handle_live, finalized;
  napi_ref cb;
  napi_async_context actx;
} poller;

/* Makes the async context JavaScript's callbacks run in (`resource`: its name in async_hooks). */
napi_status poller_init(poller *p, napi_env env, const char *resource);
/* (Re)places the callback and, the first time, starts polling `p->fd` with `on_readable` (handle.data = owner). */
napi_status poller_start(poller *p, napi_value cb, void *owner, uv_poll_cb on_readable);
/* Stops polling; `on_closed` runs once libuv let go of the handle. Nothing when polling never started. */
void poller_stop(poller *p, uv_close_cb on_closed);
/* Drops the callback and the async context (close() from JavaScript). */
void poller_release(poller *p);
/* Calls the callback with (count) in a handle scope of its own. A throw is caught and cleared here (the loop must go on:
 * the caller fails closed); 0, or -1 when the call failed. `what` names the unit in NTMDP_DEBUG's message. */
int poller_call(poller *p, int count, const char *what);
/* The same with a second argument `arg` (≥ 0). */
int poller_call2(poller *p, int count, int arg, const char *what);

/* gso.c. One segment of a GSO packet: where it was written in the output, and its length. */
typedef struct {
  size_t offset, length;
} gso_seg;
/* Cuts the TCP GSO packet p[0..len) into segments no larger than the peer's MSS and `mtu`, written 8-byte aligned into
 * out[0..room); their places in segs (at most max_segs). The segment count, or -1: not TCP, or no room. */
int gso_segment(const uint8_t *p, size_t len, uint32_t mtu, uint8_t *out, size_t room, int max_segs, gso_seg *segs);
/* How a TCP GSO packet is cut (gso_plan_tcp): the TCP header at t, thl bytes long, hl bytes of headers in all,
 * `payload` bytes of data in n segments of `seg` bytes (the last one shorter). */
typedef struct {
  int v6, n;
  size_t t, thl, hl, payload, seg;
} gso_plan;
/* Plans the cut of p[0..len) as gso_segment() does: 0, or -1 when it is not TCP (or has IPv6 extension headers).
 * `counted`: a flow without a learnt MSS counts in gso_stats' defaulted (once per packet: where it is handed over). */
int gso_plan_tcp(const uint8_t *p, size_t len, uint32_t mtu, gso_plan *g, int counted);
/* The length of segment k of a plan. */
static inline size_t gso_segment_length(const gso_plan *g, int k) {
  return g->hl + (k == g->n - 1 ? g->payload - g->seg * (size_t)k : g->seg);
}
/* Writes segment k of p (planned by g) at o, every checksum complete; returns its length. */
size_t gso_write_segment(const uint8_t *p, const gso_plan *g, int k, uint8_t *o);
/* Completes the TCP or UDP checksum of a packet the kernel left partial; 0, or -1 when it is neither. */
int gso_complete_checksum(uint8_t *p, size_t len);
/* Learns the MSS option of a TCP SYN (called with every packet injected towards the LAN / this host). */
void tcp_mss_learn(const uint8_t *p, size_t len);
/* The TCP checksum field of a packet whose checksum a device is to complete (CHECKSUM_PARTIAL, csum_start at the TCP
 * header, csum_offset 16): the pseudo-header's sum over `l4len` bytes of TCP, folded, not complemented. */
void tcp_partial_checksum(uint8_t *ip, int v6, size_t l4len);
/* Recomputes an IPv4 header's checksum. */
void ip4_checksum(uint8_t *ip);
/* How many SYNs taught an MSS, and how many GSO packets were cut at the default MSS (their flow's SYN was not seen). */
void gso_stats(double *learnt, double *defaulted);

/* rxopen.c. The thread that opens a UdpSocket's received DATA datagrams, one half of its arena at a time (rxopen.c). */
enum { RX_FREE = 0, RX_QUEUED, RX_OPENED };
typedef struct {
  const uint8_t *arena; /* the received datagrams (both halves) */
  uint8_t *plain;       /* plaintexts, at each datagram's offset + 16 */
  int32_t *meta;        /* half h's entries start at h * half_entries * umeta */
  size_t half_entries;
  int umeta;
  int state[2], count[2], stop, running, async_live;
  double stats[2]; /* opened, failed (written by the thread; read racily for stats()) */
  void *ctx;       /* the thread's EVP_CIPHER_CTX */
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uv_async_t done; /* done.data: the owner */
} rxpipe;
/* Starts the thread; `on_opened` runs on the loop after a half was opened. 0, or -1. */
int rxpipe_start(rxpipe *p, uv_loop_t *loop, uv_async_cb on_opened, void *owner);
/* Hands half `half` (count datagrams, received) to the thread. */
void rxpipe_submit(rxpipe *p, int half, int count);
/* RX_FREE, RX_QUEUED or RX_OPENED. */
int rxpipe_state(rxpipe *p, int half);
/* JavaScript is done with the half: it may be received into again. */
void rxpipe_release(rxpipe *p, int half);
/* Stops and joins the thread, then closes the async handle (`on_closed` runs once libuv let go of it). */
void rxpipe_stop(rxpipe *p, uv_close_cb on_closed);

/* The units' registration on the addon's exports. */
void nfqueue_register(napi_env env, napi_value exports);
void inject_register(napi_env env, napi_value exports);
void tun_register(napi_env env, napi_value exports);
void gso_register(napi_env env, napi_value exports);
void udp_register(napi_env env, napi_value exports);
void aead_register(napi_env env, napi_value exports);
void keccak_register(napi_env env, napi_value exports);
void hmac_register(napi_env env, napi_value exports);
void rxkeys_register(napi_env env, napi_value exports);

#endif
