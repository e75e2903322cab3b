/*
 * udp.c: UdpSocket, the terminal's one UDP socket (dual-stack "[::]:port", or IPv4), read with recvmmsg in bursts into
 * a shared arena (one JS call per burst) and written with synchronous sendto (no per-datagram request object, unlike
 * node:dgram), or queued and flushed with one sendmmsg. Its TypeScript side is agent/src/dataplane/conn/native-udp.ts.
 * meta per datagram (int32 × UMETA): arena offset, length, port, family (4 or 6), opened (0 not, 1 authentic, 2 the tag
 * did not verify), the generation of the key that opened it; addresses: 16 bytes each in `addrs` (IPv4 as
 * ::ffff:a.b.c.d).
 *
 * Receiving in two halves (issue 15): started with `open` set, the socket receives each burst into one half of its
 * arena (and of meta and addrs) and hands it to its opening thread (rxopen.c), which opens the DATA datagrams into
 * `plain` while this thread receives into the other half or runs JavaScript; JavaScript is called with (count, half)
 * once a half is opened, in the order received. With both halves busy, reading pauses until JavaScript had one.
 * A burst without DATA (signalling: registration, control, handshakes, binds) that arrives while neither half is
 * with the thread or waiting for JavaScript goes to JavaScript at once, as without the thread: the hand-over and
 * back (two thread wake-ups) would only delay it, on the critical path of registration and tunnel set-up. Order is
 * kept: nothing received before it is still on its way.
 *
 * Segmentation offload (Linux ≥ 4.18 / 5.0; kernel docs: Documentation/networking/segmentation-offloads.rst, "UDP
 * GSO", and udp(7) UDP_SEGMENT / UDP_GRO): queue() collects datagrams and flush() sends them in one sendmmsg, each run
 * of equal-sized datagrams to one destination as a single UDP_SEGMENT (GSO) send: the stack, the routers' netfilter and
 * the links on the way see one packet per run instead of one per datagram, and the peer's socket, which has UDP_GRO
 * set, receives the run whole (split here into the datagrams it carries). A kernel or route that refuses GSO gets the
 * run as separate datagrams. Only the data path's bulk sends are queued; the TTL-limited sends (IP_TTL, ip(7);
 * IPV6_HOPLIMIT, RFC 3542 §6.3) are not.
 *
 * Sealing on a thread of its own (issue 15): queueSeal() takes a DATA datagram still in plaintext, its prefix (the
 * relay header if any and the sealed header the keypair wrote: type, receiver index, counter; docs/protocol.md §3.3),
 * the send key and the counter; the key is copied into the queue entry and wiped once the datagram is sealed. The
 * socket keeps two queues: JavaScript fills one while the sealing thread seals the other's datagrams in place
 * (ChaCha20-Poly1305, RFC 8439 §2.8, nonce 0x00000000 ‖ counter LE) and sends them as flush() did. A flush hands the
 * filled queue over and waits only while the thread still has the one before (a burst's worth). send() waits until
 * the thread sent everything (order is kept). Without the thread (NTM_NO_TX_THREAD=1, or it could not start), the
 * flush seals and sends on the calling thread. The keypair's checks, limits and counters stay in JavaScript
 * (crypto/session.ts TunnelKeypair.sealVia).
 */
#define _GNU_SOURCE
#include "ntmdp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define UMETA 6
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
  socklen_t tolen;        /* 0: not to be sent (its sealing failed) */
  /* queueSeal()'s: sealed in place at flush, after `plen` bytes of prefix; the key wiped once it is done. */
  int seal;
  uint32_t plen;
  uint64_t counter;
  uint8_t key[32];
} txent;

/* A queue of datagrams for one sendmmsg: their bytes contiguous in buf. */
typedef struct {
  uint8_t *buf;
  size_t used;
  txent *ent;
  int n;
} txq;

/* The sealing thread: `busy` while it has queue `which` (set by the loop thread, cleared by the sealing thread). */
typedef struct {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int running, stop, busy, which;
} sealer;

typedef struct {
  poller io; /* io.fd: the socket, closed here */
  int closed;
  uint8_t *arena, *plain; /* two halves of UBATCH slots each; plain: opened datagrams' plaintexts */
  size_t slot;            /* bytes per datagram slot */
  rxpipe rx;
  int piped;           /* the opening thread runs: bursts alternate between the halves */
  int next_rx, next_js; /* the half the next recvmmsg fills; the half JavaScript gets next */
  int paused;          /* both halves busy: polling stopped until JavaScript had one */
  int32_t *meta;
  uint8_t *addrs;
  int family_v6;
  int gro; /* UDP_GRO is on: a message may carry a run of datagrams */
  int gso; /* UDP_SEGMENT works (cleared at the first refusal of the kind that will not change) */
  txq q[2];
  int cur;        /* the queue JavaScript fills */
  int want_sealer; /* start the sealing thread at the first queueSeal() */
  sealer st;
  void *sctx;     /* EVP_CIPHER_CTX sealing queueSeal()'s datagrams: used by whichever thread sends a queue */
  /* The last destination queued: a burst mostly goes to one peer (its address string is parsed once). */
  char last_addr[64];
  uint32_t last_port;
  struct sockaddr_in6 last_to;
  socklen_t last_tolen;
  double stats[9]; /* received, bursts, send errors, receive errors, GSO sends, GRO messages, queued, flushes, bursts
                     past the opening thread (signalling only, handed to JavaScript at once) */
  /* and rx.stats: opened, openFailed; txstats (under st.mu): send errors, GSO sends, flushes, sealed of the queues sent */
  double txstats[4];
} udpsock;

static void txq_free(txq *q) {
  if (q->ent) memset(q->ent, 0, TXMAX * sizeof(txent)); /* keys of datagrams never sent */
  free(q->buf);
  free(q->ent);
}

static void udp_release(udpsock *u) {
  txq_free(&u->q[0]);
  txq_free(&u->q[1]);
  if (u->sctx) EVP_CIPHER_CTX_free(u->sctx);
  pthread_mutex_destroy(&u->st.mu);
  pthread_cond_destroy(&u->st.cv);
  free(u);
}

/* A socket that failed before JavaScript got it: nothing else refers to its buffers yet. */
static napi_value udp_abandon(udpsock *u, napi_value ret) {
  if (u->io.fd >= 0) close(u->io.fd);
  free(u->arena);
  free(u->plain);
  free(u->meta);
  free(u->addrs);
  udp_release(u);
  return ret;
}

static void on_udp_closed(uv_handle_t *h) {
  udpsock *u = h->data;
  close(u->io.fd);
  u->io.fd = -1;
  u->io.handle_live = 0;
  if (u->io.finalized && !u->rx.async_live) udp_release(u);
}

static void on_rx_closed(uv_handle_t *h) {
  udpsock *u = h->data;
  u->rx.async_live = 0;
  if (u->io.finalized && !u->io.handle_live) udp_release(u);
}

static void sealer_stop(udpsock *u);

/* Stops reading (and the opening and sealing threads: the latter sends what it has first); the socket is closed at
 * once, or by on_udp_closed once libuv let go of it. */
static void udp_shut(udpsock *u) {
  u->closed = 1;
  sealer_stop(u);
  rxpipe_stop(&u->rx, on_rx_closed);
  if (u->io.polling) poller_stop(&u->io, on_udp_closed);
  else if (u->io.fd >= 0) {
    close(u->io.fd);
    u->io.fd = -1;
  }
}

static void udp_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  udpsock *u = data;
  u->io.finalized = 1;
  if (!u->closed) udp_shut(u);
  /* Still in libuv's hands (closing): on_udp_closed / on_rx_closed frees it. */
  if (u->io.handle_live || u->rx.async_live) return;
  udp_release(u);
}

/* Whether none of the burst's `kept` datagrams (meta from entry `ebase`) is DATA (type 0x04, docs/protocol.md §3.3):
 * registration answers, control frames, handshakes and binds, which the opening thread has nothing to do for. */
static int signalling_only(const udpsock *u, size_t ebase, int kept) {
  for (int i = 0; i < kept; i++) {
    const int32_t *m = u->meta + (ebase + (size_t)i) * UMETA;
    if (m[1] > 0 && u->arena[m[0]] == 0x04) return 0;
  }
  return 1;
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
    /* The half this burst goes to: with the opening thread, the next one in turn once JavaScript is done with it. */
    int h = u->piped ? u->next_rx : 0;
    if (u->piped && rxpipe_state(&u->rx, h) != RX_FREE) {
      uv_poll_stop(&u->io.handle);
      u->paused = 1;
      return;
    }
    size_t base = (size_t)h * UBATCH * u->slot, ebase = (size_t)h * UMAXD;
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < UBATCH; i++) {
      iov[i].iov_base = u->arena + base + (size_t)i * u->slot;
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
    int n = recvmmsg(u->io.fd, msgs, UBATCH, MSG_DONTWAIT, NULL);
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
        int32_t *m = u->meta + (ebase + (size_t)kept) * UMETA;
        memcpy(u->addrs + (ebase + (size_t)kept) * 16, a, 16);
        m[0] = (int32_t)(base + (size_t)i * u->slot + off);
        m[1] = (int32_t)(len - off < seg ? len - off : seg);
        m[2] = port;
        m[3] = fam;
        m[4] = m[5] = 0;
        kept++;
        off += seg;
      } while (off < len);
    }
    u->stats[0] += kept;
    u->stats[1]++;
    int piped = kept > 0 && u->piped;
    if (piped && signalling_only(u, ebase, kept) && rxpipe_state(&u->rx, h ^ 1) == RX_FREE) {
      piped = 0;
      u->stats[8]++;
    }
    if (piped) {
      rxpipe_submit(&u->rx, h, kept);
      u->next_rx ^= 1;
    } else if (kept > 0 && poller_call2(&u->io, kept, h, "udp callback") != 0)
      u->stats[3]++;
    if (u->closed || n < UBATCH) return;
  }
}

/* The opening thread finished a half (or two): JavaScript gets them in the order they were received. */
static void on_rx_opened(uv_async_t *a) {
  udpsock *u = a->data;
  while (!u->closed && rxpipe_state(&u->rx, u->next_js) == RX_OPENED) {
    int h = u->next_js;
    if (poller_call2(&u->io, u->rx.count[h], h, "udp callback") != 0) u->stats[3]++;
    if (u->closed) return;
    rxpipe_release(&u->rx, h);
    u->next_js ^= 1;
    if (u->paused) {
      u->paused = 0;
      uv_poll_start(&u->io.handle, UV_READABLE, on_udp_poll);
    }
  }
}

/* new UdpSocket(address, port, rcvbuf, sndbuf): address "::" (dual-stack), an IPv6 or an IPv4 address. */
static napi_value udp_new(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], self;
  CHECK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  char addr[64] = {0};
  size_t alen = 0;
  uint32_t port = 0, rcvbuf = 4 << 20, sndbuf = 4 << 20, reuseport = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], addr, sizeof addr, &alen) != napi_ok) {
    napi_throw_type_error(env, NULL, "ntmdp: UdpSocket(address, port[, rcvbuf, sndbuf, reuseport])");
    return NULL;
  }
  napi_get_value_uint32(env, argv[1], &port);
  if (argc > 2) napi_get_value_uint32(env, argv[2], &rcvbuf);
  if (argc > 3) napi_get_value_uint32(env, argv[3], &sndbuf);
  if (argc > 4) napi_get_value_uint32(env, argv[4], &reuseport);
  udpsock *u = calloc(1, sizeof *u);
  if (!u) return throw_errno(env, "ntmdp: calloc", ENOMEM);
  u->io.env = env;
  u->io.fd = -1;
  u->slot = 65536;
  u->arena = malloc(u->slot * UBATCH * 2);
  u->plain = malloc(u->slot * UBATCH * 2);
  u->meta = calloc((size_t)UMAXD * 2, sizeof(int32_t) * UMETA);
  u->addrs = calloc((size_t)UMAXD * 2, 16);
  pthread_mutex_init(&u->st.mu, NULL);
  pthread_cond_init(&u->st.cv, NULL);
  u->want_sealer = !getenv("NTM_NO_TX_THREAD");
  for (int k = 0; k < 2; k++) {
    u->q[k].buf = malloc(TXBYTES);
    u->q[k].ent = calloc(TXMAX, sizeof(txent));
  }
  if (!u->arena || !u->plain || !u->meta || !u->addrs || !u->q[0].buf || !u->q[0].ent || !u->q[1].buf || !u->q[1].ent)
    return udp_abandon(u, throw_errno(env, "ntmdp: malloc", ENOMEM));
  struct in_addr a4;
  struct in6_addr a6;
  int v4 = inet_pton(AF_INET, addr, &a4) == 1;
  if (!v4 && inet_pton(AF_INET6, addr, &a6) != 1) {
    napi_throw_type_error(env, NULL, "ntmdp: not an IP address");
    return udp_abandon(u, NULL);
  }
  u->family_v6 = !v4;
  u->io.fd = socket(v4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (u->io.fd < 0) return udp_abandon(u, throw_errno(env, "ntmdp: socket", errno));
  int zero = 0, rb = (int)rcvbuf, sb = (int)sndbuf;
  if (!v4) setsockopt(u->io.fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  if (setsockopt(u->io.fd, SOL_SOCKET, SO_RCVBUFFORCE, &rb, sizeof rb) < 0) setsockopt(u->io.fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
  if (setsockopt(u->io.fd, SOL_SOCKET, SO_SNDBUFFORCE, &sb, sizeof sb) < 0) setsockopt(u->io.fd, SOL_SOCKET, SO_SNDBUF, &sb, sizeof sb);
  /* Several processes on one port (the DC's workers, issue 15): the kernel spreads datagrams by 4-tuple hash. */
  int on = 1;
  if (reuseport && setsockopt(u->io.fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0)
    return udp_abandon(u, throw_errno(env, "ntmdp: SO_REUSEPORT", errno));
  int r;
  if (v4) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr = a4};
    r = bind(u->io.fd, (struct sockaddr *)&sa, sizeof sa);
  } else {
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port), .sin6_addr = a6};
    r = bind(u->io.fd, (struct sockaddr *)&sa, sizeof sa);
  }
  if (r < 0) return udp_abandon(u, throw_errno(env, "ntmdp: bind", errno));
  int one = 1;
  u->gro = setsockopt(u->io.fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
  /* GSO only where the kernel knows UDP_SEGMENT (≥ 4.18): an older one would ignore the control message and send a
   * whole run as one datagram. */
  u->gso = !getenv("NTMDP_NO_GSO") && setsockopt(u->io.fd, SOL_UDP, UDP_SEGMENT, &zero, sizeof zero) == 0;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  getsockname(u->io.fd, (struct sockaddr *)&ss, &sl);
  uint32_t bound = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port) : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  CHECK(napi_wrap(env, self, u, udp_free, NULL, NULL));
  napi_value pv, fv;
  CHECK(expose_buffer(env, self, "arena", u->arena, u->slot * UBATCH * 2));
  CHECK(expose_buffer(env, self, "plain", u->plain, u->slot * UBATCH * 2));
  CHECK(expose_array(env, self, "meta", u->meta, (size_t)UMAXD * 2 * UMETA, napi_int32_array));
  CHECK(expose_array(env, self, "addrs", u->addrs, (size_t)UMAXD * 2 * 16, napi_uint8_array));
  CHECK(napi_create_uint32(env, bound, &pv));
  CHECK(napi_create_int32(env, v4 ? 4 : 6, &fv));
  CHECK(napi_set_named_property(env, self, "port", pv));
  CHECK(napi_set_named_property(env, self, "family", fv));
  CHECK(poller_init(&u->io, env, "ntmdp.udp"));
  return self;
}

/* start(onBurst(count, half)[, open]) → whether the opening thread runs (open: start it, the first time). */
static napi_value udp_start(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], ret;
  udpsock *u = unwrap_this(env, info, &argc, argv);
  if (!u || argc < 1 || u->closed) return NULL;
  bool open = false;
  if (argc > 1) napi_get_value_bool(env, argv[1], &open);
  if (open && !u->piped && !u->io.polling) {
    uv_loop_t *loop;
    napi_get_uv_event_loop(env, &loop);
    u->rx.arena = u->arena;
    u->rx.plain = u->plain;
    u->rx.meta = u->meta;
    u->rx.half_entries = UMAXD;
    u->rx.umeta = UMETA;
    u->piped = rxpipe_start(&u->rx, loop, on_rx_opened, u) == 0;
    if (!u->piped) rxpipe_stop(&u->rx, on_rx_closed); /* what did start is undone; JavaScript opens everything */
  }
  CHECK(poller_start(&u->io, argv[0], u, on_udp_poll));
  CHECK(napi_get_boolean(env, u->piped, &ret));
  return ret;
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

/* (address string, port) → where to send, for queue() and queueSeal(): the last one is kept, since a burst mostly goes
 * to one peer. 0 when the family cannot be reached from this socket. */
static socklen_t udp_dest_cached(udpsock *u, const char *addr, uint32_t port, struct sockaddr_in6 *out) {
  if (u->last_tolen != 0 && port == u->last_port && strcmp(addr, u->last_addr) == 0) {
    memcpy(out, &u->last_to, u->last_tolen);
    return u->last_tolen;
  }
  int to_v4;
  socklen_t sl = udp_dest(u, addr, port, out, &to_v4);
  if (sl != 0) {
    memcpy(u->last_addr, addr, 64);
    u->last_port = port;
    memcpy(&u->last_to, out, sl);
    u->last_tolen = sl;
  }
  return sl;
}

/* The destination of a datagram at argv[0] (string address) and argv[1] (uint32 port); 0, or -1 with a TypeError thrown
 * saying `usage`. */
static inline int udp_to(napi_env env, napi_value *argv, char addr[64], uint32_t *port, const char *usage) {
  size_t alen;
  memset(addr, 0, 64);
  if (napi_get_value_string_utf8(env, argv[0], addr, 64, &alen) != napi_ok || napi_get_value_uint32(env, argv[1], port) != napi_ok) {
    napi_throw_type_error(env, NULL, usage);
    return -1;
  }
  return 0;
}

/* The arguments send() and queue() share: (Uint8Array data, string address, uint32 port, …). 0, or -1 with a
 * TypeError thrown saying `usage`. */
static inline int udp_args(napi_env env, napi_value *argv, uint8_t **data, size_t *len, char addr[64], uint32_t *port, const char *usage) {
  if (bytes_of(env, argv[0], data, len)) {
    napi_throw_type_error(env, NULL, usage);
    return -1;
  }
  return udp_to(env, argv + 1, addr, port, usage);
}

static void udp_drain(udpsock *u);

static napi_value udp_send(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], ret;
  udpsock *u = unwrap_this(env, info, &argc, argv);
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
  if (!u->closed) udp_drain(u);
  int rc;
  if (u->closed) rc = -EBADF;
  else if (sl == 0) rc = -EAFNOSUPPORT;
  else if (ttl == 0) rc = sendto(u->io.fd, data, len, 0, (struct sockaddr *)&ss, sl) < 0 ? -errno : 0;
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
    rc = sendmsg(u->io.fd, &mh, 0) < 0 ? -errno : 0;
  }
  if (rc < 0) u->stats[2]++;
  napi_create_int32(env, rc, &ret);
  return ret;
}


/* Seals queueSeal()'s datagrams of q in place (the tag after each plaintext) and wipes their keys. A datagram whose
 * sealing failed (OpenSSL could not: not expected) is zeroed and not sent. Returns how many were sealed. */
static int txq_seal(udpsock *u, txq *q) {
  uint8_t nonce[12] = {0};
  int sealed = 0;
  for (int i = 0; i < q->n; i++) {
    txent *e = &q->ent[i];
    if (!e->seal) continue;
    for (int k = 0; k < 8; k++) nonce[4 + k] = (uint8_t)(e->counter >> (8 * k));
    uint8_t *p = q->buf + e->off + e->plen;
    int n = (int)(e->len - e->plen - 16), a = 0, f = 0;
    if (EVP_EncryptInit_ex(u->sctx, NULL, NULL, e->key, nonce) == 1 && EVP_EncryptUpdate(u->sctx, p, &a, p, n) == 1 &&
        EVP_EncryptFinal_ex(u->sctx, p + a, &f) == 1 && EVP_CIPHER_CTX_ctrl(u->sctx, EVP_CTRL_AEAD_GET_TAG, 16, p + n) == 1)
      sealed++;
    else {
      memset(q->buf + e->off, 0, e->len); /* a plaintext never leaves */
      e->tolen = 0;
    }
    memset(e->key, 0, 32);
    e->seal = 0;
  }
  return sealed;
}

/* Seals and sends everything in q: one sendmmsg, a GSO message per run of equal-sized datagrams to one destination.
 * st: send errors, GSO sends, flushes, sealed, added to. Runs on the sealing thread, or on the loop thread when there
 * is none (never both at once: the loop thread hands a queue over and takes it back under st.mu). */
static void txq_send(udpsock *u, txq *q, double st[4]) {
  struct mmsghdr mm[TXMAX];
  struct iovec iov[TXMAX];
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } ctl[TXMAX];
  int first[TXMAX + 1]; /* message k carries queue entries first[k] .. first[k+1]-1 */
  int m = 0;
  st[3] += txq_seal(u, q);
  memset(mm, 0, sizeof mm);
  for (int i = 0; i < q->n;) {
    const txent *e = &q->ent[i];
    if (e->tolen == 0) {
      st[0]++;
      i++;
      continue;
    }
    int j = i + 1;
    size_t total = e->len;
    if (u->gso) {
      /* Equal sizes, one destination; a shorter datagram may end the run (GSO's last segment). */
      while (j < q->n && j - i < GSO_MAX_SEGS && q->ent[j].len <= e->len && q->ent[j].len > 0 && total + q->ent[j].len <= GSO_MAX_BYTES &&
             q->ent[j].tolen == e->tolen && memcmp(&q->ent[j].to, &e->to, e->tolen) == 0) {
        total += q->ent[j].len;
        j++;
        if (q->ent[j - 1].len < e->len) break;
      }
    }
    iov[m].iov_base = q->buf + e->off; /* entries are contiguous in buf */
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
    first[m + 1] = j;
    m++;
    i = j;
  }
  for (int k = 0; k < m;) {
    int r = sendmmsg(u->io.fd, mm + k, (unsigned)(m - k), 0);
    if (r > 0) {
      for (int x = k; x < k + r; x++)
        if (first[x + 1] - first[x] > 1) st[1]++;
      k += r;
      continue;
    }
    int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
      /* The socket's send buffer is full: the rest of this flush is dropped at once (counted), as a full queue drops,
       * rather than asked for again datagram by datagram. */
      for (int x = k; x < m; x++) st[0] += first[x + 1] - first[x];
      break;
    }
    if (first[k + 1] - first[k] > 1) {
      /* The run was refused as a GSO send: send its datagrams one by one, and stop asking when GSO is not there. */
      if (e == EIO || e == ENOPROTOOPT || e == EOPNOTSUPP) u->gso = 0;
      for (int x = first[k]; x < first[k + 1]; x++)
        if (sendto(u->io.fd, q->buf + q->ent[x].off, q->ent[x].len, 0, (struct sockaddr *)&q->ent[x].to, q->ent[x].tolen) < 0) st[0]++;
    } else
      st[0]++;
    k++;
  }
  st[2]++;
  q->n = 0;
  q->used = 0;
}

static void txstats_add(udpsock *u, const double st[4]) {
  pthread_mutex_lock(&u->st.mu);
  for (int k = 0; k < 4; k++) u->txstats[k] += st[k];
  pthread_mutex_unlock(&u->st.mu);
}

static void *sealer_main(void *arg) {
  udpsock *u = arg;
  pthread_mutex_lock(&u->st.mu);
  for (;;) {
    while (!u->st.busy && !u->st.stop) pthread_cond_wait(&u->st.cv, &u->st.mu);
    if (!u->st.busy) break; /* stopped, with nothing left to send */
    txq *q = &u->q[u->st.which];
    pthread_mutex_unlock(&u->st.mu);
    double st[4] = {0};
    txq_send(u, q, st);
    pthread_mutex_lock(&u->st.mu);
    for (int k = 0; k < 4; k++) u->txstats[k] += st[k];
    u->st.busy = 0;
    pthread_cond_broadcast(&u->st.cv);
  }
  pthread_mutex_unlock(&u->st.mu);
  return NULL;
}

/* The context queueSeal()'s datagrams are sealed with, and the sealing thread unless it is turned off (or cannot
 * start: then the loop thread seals at each flush). 0, or -1 when OpenSSL has no ChaCha20-Poly1305. */
static int sealer_start(udpsock *u) {
  if (!u->sctx) {
    u->sctx = EVP_CIPHER_CTX_new();
    if (!u->sctx || EVP_EncryptInit_ex(u->sctx, EVP_chacha20_poly1305(), NULL, NULL, NULL) != 1) return -1;
  }
  if (u->want_sealer && !u->st.running) {
    u->want_sealer = 0;
    u->st.running = pthread_create(&u->st.thread, NULL, sealer_main, u) == 0;
  }
  return 0;
}

/* Joins the sealing thread once it sent the queue it has. */
static void sealer_stop(udpsock *u) {
  if (!u->st.running) return;
  pthread_mutex_lock(&u->st.mu);
  u->st.stop = 1;
  pthread_cond_broadcast(&u->st.cv);
  pthread_mutex_unlock(&u->st.mu);
  pthread_join(u->st.thread, NULL);
  u->st.running = 0;
}

/* Sends what JavaScript queued: hands the queue to the sealing thread (waiting only while it still has the one before)
 * and fills the other from now on; without the thread, seals and sends it here. */
static void udp_flush(udpsock *u) {
  txq *q = &u->q[u->cur];
  if (q->n == 0) return;
  if (!u->st.running) {
    double st[4] = {0};
    txq_send(u, q, st);
    txstats_add(u, st);
    return;
  }
  pthread_mutex_lock(&u->st.mu);
  while (u->st.busy) pthread_cond_wait(&u->st.cv, &u->st.mu);
  u->st.busy = 1;
  u->st.which = u->cur;
  pthread_cond_broadcast(&u->st.cv);
  pthread_mutex_unlock(&u->st.mu);
  u->cur ^= 1;
}

/* Everything queued is sent (the sealing thread included) when this returns. */
static void udp_drain(udpsock *u) {
  udp_flush(u);
  if (!u->st.running) return;
  pthread_mutex_lock(&u->st.mu);
  while (u->st.busy) pthread_cond_wait(&u->st.cv, &u->st.mu);
  pthread_mutex_unlock(&u->st.mu);
}

/* The next entry of the current queue for a datagram of `len` bytes to (addr, port), its place and destination set
 * (the queue flushed first when it is full): 0, or -errno and nothing queued. The caller writes the bytes at
 * buf + off, then calls udp_enqueued(). */
static int udp_enqueue(udpsock *u, size_t len, const char *addr, uint32_t port, txent **out) {
  struct sockaddr_in6 to;
  socklen_t tolen;
  if (u->closed) return -EBADF;
  if (len > 65535) return -EMSGSIZE;
  if ((tolen = udp_dest_cached(u, addr, port, &to)) == 0) return -EAFNOSUPPORT;
  txq *q = &u->q[u->cur];
  if (q->n >= TXMAX || q->used + len > TXBYTES) {
    udp_flush(u);
    q = &u->q[u->cur];
  }
  txent *e = &q->ent[q->n];
  e->off = (uint32_t)q->used;
  e->len = (uint32_t)len;
  e->seal = 0;
  memcpy(&e->to, &to, tolen);
  e->tolen = tolen;
  *out = e;
  return 0;
}

/* The entry udp_enqueue() gave is written: it is part of the queue. */
static void udp_enqueued(udpsock *u, size_t len) {
  txq *q = &u->q[u->cur];
  q->used += len;
  q->n++;
  u->stats[6]++;
}

/* The same for a datagram to seal at the flush: after `plen` bytes of prefix, under `key` and `counter`. */
static void udp_enqueued_sealing(udpsock *u, txent *e, size_t len, size_t plen, uint64_t counter, const uint8_t *key) {
  e->seal = 1;
  e->plen = (uint32_t)plen;
  e->counter = counter;
  memcpy(e->key, key, 32);
  udp_enqueued(u, len);
}

/* JavaScript's answer to a queueing call: rc, a refusal counted as a send error. */
static napi_value udp_queued_rc(napi_env env, udpsock *u, int rc) {
  napi_value ret;
  if (rc < 0) u->stats[2]++;
  napi_create_int32(env, rc, &ret);
  return ret;
}

/* queue(data, address, port) → 0 or -errno: copies the datagram for the next flush() (which happens first when the
 * queue is full). Errors of the send itself are counted in stats().sendErrors. */
static napi_value udp_queue(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  udpsock *u = unwrap_this(env, info, &argc, argv);
  if (!u || argc < 3) return NULL;
  uint8_t *data;
  size_t len;
  char addr[64];
  uint32_t port = 0;
  if (udp_args(env, argv, &data, &len, addr, &port, "ntmdp: queue(Uint8Array, address, port)")) return NULL;
  txent *e;
  int rc = udp_enqueue(u, len, addr, port, &e);
  if (rc == 0) {
    memcpy(u->q[u->cur].buf + e->off, data, len);
    udp_enqueued(u, len);
  }
  return udp_queued_rc(env, u, rc);
}

/* queueSeal(prefix, key32, counter, plaintext, address, port) → 0 or -errno: queues prefix ‖ plaintext, sealed at the
 * flush (ChaCha20-Poly1305 under key32 with the counter's nonce; the 16-byte tag appended). The prefix ends in the
 * sealed header the keypair wrote for this counter (docs/protocol.md §3.3). */
static napi_value udp_queue_seal(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  udpsock *u = unwrap_this(env, info, &argc, argv);
  if (!u) return NULL;
  static const char usage[] = "ntmdp: queueSeal(prefix, key32, counter, plaintext, address, port)";
  uint8_t *pre, *key, *pt;
  size_t plen, klen, tlen;
  double counter = -1;
  char addr[64];
  uint32_t port = 0;
  if (argc < 6 || bytes_of(env, argv[0], &pre, &plen) || bytes_of(env, argv[1], &key, &klen) || klen != 32 ||
      napi_get_value_double(env, argv[2], &counter) != napi_ok || bytes_of(env, argv[3], &pt, &tlen)) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  if (udp_to(env, argv + 4, addr, &port, usage)) return NULL;
  if (!(counter >= 0 && counter <= 9007199254740991.0)) {
    napi_throw_range_error(env, NULL, "ntmdp: counter out of range");
    return NULL;
  }
  size_t len = plen + tlen + 16;
  txent *e;
  int rc = u->closed ? -EBADF : sealer_start(u) != 0 ? -ENOPROTOOPT : udp_enqueue(u, len, addr, port, &e);
  if (rc == 0) {
    uint8_t *d = u->q[u->cur].buf + e->off;
    memcpy(d, pre, plen);
    memcpy(d + plen, pt, tlen);
    udp_enqueued_sealing(u, e, len, plen, (uint64_t)counter, key);
  }
  return udp_queued_rc(env, u, rc);
}

/* queueSealGso(prefix, key32, counter, packet, mtu, address, port) → segments queued, or -errno: the TCP GSO packet
 * (nfqueue.c "whole") cut as gso.c cuts it (segments no larger than the peer's MSS and `mtu`, every checksum
 * complete), each segment queued as queueSeal() queues a datagram, under counters counter, counter + 1, …: the prefix
 * copied with its last 8 bytes (the sealed header's counter, docs/protocol.md §3.3) set to each segment's. Nothing is
 * queued on an error: -EINVAL when it is not TCP, -EMSGSIZE for more than `maxSegs` segments (the counters the
 * keypair let the caller take). The segments are cut here, into the queue, so each is copied once. */
static napi_value udp_queue_seal_gso(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  udpsock *u = unwrap_this(env, info, &argc, argv);
  if (!u) return NULL;
  static const char usage[] = "ntmdp: queueSealGso(prefix, key32, counter, packet, mtu, maxSegs, address, port)";
  uint8_t *pre, *key, *pt;
  size_t plen, klen, tlen;
  double counter = -1;
  uint32_t mtu = 0, max_segs = 0;
  char addr[64];
  uint32_t port = 0;
  if (argc < 8 || bytes_of(env, argv[0], &pre, &plen) || plen < 16 || bytes_of(env, argv[1], &key, &klen) || klen != 32 ||
      napi_get_value_double(env, argv[2], &counter) != napi_ok || bytes_of(env, argv[3], &pt, &tlen) ||
      napi_get_value_uint32(env, argv[4], &mtu) != napi_ok || napi_get_value_uint32(env, argv[5], &max_segs) != napi_ok) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  if (udp_to(env, argv + 6, addr, &port, usage)) return NULL;
  if (!(counter >= 0 && counter + max_segs <= 9007199254740991.0)) {
    napi_throw_range_error(env, NULL, "ntmdp: counter out of range");
    return NULL;
  }
  gso_plan g;
  int rc = u->closed ? -EBADF : sealer_start(u) != 0 ? -ENOPROTOOPT : 0;
  if (rc == 0 && gso_plan_tcp(pt, tlen, mtu, &g, 0) != 0) rc = -EINVAL;
  if (rc == 0 && (uint32_t)g.n > max_segs) rc = -EMSGSIZE;
  for (int k = 0; rc == 0 && k < g.n; k++) {
    size_t len = plen + gso_segment_length(&g, k) + 16;
    txent *e;
    rc = udp_enqueue(u, len, addr, port, &e);
    if (rc != 0) break; /* only the first can fail: the destination is the same for all */
    uint8_t *d = u->q[u->cur].buf + e->off;
    uint64_t c = (uint64_t)counter + (uint64_t)k;
    memcpy(d, pre, plen);
    for (int b = 0; b < 8; b++) d[plen - 1 - b] = (uint8_t)(c >> (8 * b));
    gso_write_segment(pt, &g, k, d + plen);
    udp_enqueued_sealing(u, e, len, plen, c, key);
  }
  napi_value ret = udp_queued_rc(env, u, rc);
  if (rc == 0) napi_create_int32(env, g.n, &ret);
  return ret;
}

static napi_value udp_flush_js(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  udpsock *u = unwrap_this(env, info, &argc, NULL);
  if (u && !u->closed) udp_flush(u);
  return NULL;
}

static napi_value udp_close(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  udpsock *u = unwrap_this(env, info, &argc, NULL);
  if (!u || u->closed) return NULL;
  udp_flush(u); /* udp_shut joins the sealing thread once it sent it */
  poller_release(&u->io);
  udp_shut(u);
  return NULL;
}

static napi_value udp_stats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  udpsock *u = unwrap_this(env, info, &argc, NULL);
  if (!u) return NULL;
  static const char *const names[13] = {"received", "bursts",  "sendErrors", "receiveErrors", "gsoSends", "groMessages", "queued",
                                        "flushes",  "atOnce",  "opened",     "openFailed",    "sealed",   "sealThread"};
  double all[13];
  memcpy(all, u->stats, sizeof u->stats);
  pthread_mutex_lock(&u->st.mu);
  all[2] += u->txstats[0];
  all[4] += u->txstats[1];
  all[7] += u->txstats[2];
  all[11] = u->txstats[3];
  pthread_mutex_unlock(&u->st.mu);
  all[9] = u->rx.stats[0];
  all[10] = u->rx.stats[1];
  all[12] = u->st.running;
  return stats_object(env, names, all, 13);
}

void udp_register(napi_env env, napi_value exports) {
  static const napi_property_descriptor methods[] = {
      {"start", NULL, udp_start, NULL, NULL, NULL, napi_default, NULL},
      {"send", NULL, udp_send, NULL, NULL, NULL, napi_default, NULL},
      {"queue", NULL, udp_queue, NULL, NULL, NULL, napi_default, NULL},
      {"queueSeal", NULL, udp_queue_seal, NULL, NULL, NULL, napi_default, NULL},
      {"queueSealGso", NULL, udp_queue_seal_gso, NULL, NULL, NULL, napi_default, NULL},
      {"flush", NULL, udp_flush_js, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, udp_close, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, udp_stats, NULL, NULL, NULL, napi_default, NULL},
  };
  define_class(env, exports, "UdpSocket", udp_new, methods, sizeof methods / sizeof methods[0]);
}
