/*
 * nfqueue.c: NfqSource, NFQUEUE (libnetfilter_queue) read in bursts. One event-loop wakeup drains every queued packet
 * into a shared arena and calls JavaScript once per burst; verdicts come back in a shared array and go out as one batch
 * verdict when they all agree (node-nfqueue reads one packet per wakeup and builds JS objects for each). Its TypeScript
 * counterpart is agent/src/dataplane/nfqueue/batch-source.ts; tests/netns/nfqueue-compliance runs both.
 * Kernel interface: netfilter.org/projects/libnetfilter_queue/doxygen (nfq_set_verdict_batch: NFQA_VERDICT_BATCH,
 * every packet id ≤ the given one), include/uapi/linux/netfilter/nfnetlink_queue.h.
 *
 * meta, per packet (int32 × META): arena offset, length, packet id, mark, in ifindex, out ifindex, whole (1: a TCP GSO
 * packet handed over uncut, see below).
 * verdicts, per packet (int32 × VERD): verdict (0 drop, 1 accept, 2 accept with the payload at out[offset..+length],
 * 3 deferred: settled later with settle()), out offset, out length, mark (0: unchanged).
 *
 * GSO (a source opened with gsoMtu > 0): the kernel hands TCP packets over unsegmented, up to 64 KB
 * (NFQA_CFG_F_GSO; nfnetlink_queue.c queues a GSO skb whole instead of segmenting it first), so one queue round trip
 * and one verdict carry a whole burst of a TCP stream. Such a packet (NFQA_SKB_GSO) is cut here into segments that fit
 * gsoMtu (gso.c) and handed to JavaScript as consecutive entries sharing its packet id; the packet's one verdict is
 * accept only when every segment was accepted unchanged, else drop. So a GSO source is for a handler that consumes
 * its packets (the data plane's queue towards the tunnels): a segment cannot be replaced, re-marked or deferred.
 * Packets the kernel left with a partial checksum (NFQA_SKB_CSUMNOTREADY) get it completed before JavaScript sees
 * them, as they would on the wire.
 *
 * Whole (a GSO source opened with `whole` set, issue 15): a TCP GSO packet is handed over uncut, as one entry marked
 * whole, for a handler that cuts it where it seals it (udp.c queueSealGso: one call into JavaScript and one keypair
 * check per 64 KB instead of per segment, wireguard-go's TSO path). Its checksums are left as the kernel gave them:
 * every segment's are computed when it is cut.
 */
#define _GNU_SOURCE
#include "ntmdp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libnetfilter_queue/libnetfilter_queue.h>

#define META 7
#define VERD 4
/* A GSO source stops reading a burst when fewer entries or arena bytes than one 64 KB packet may need are left: 1,366
 * segments at Linux's smallest send MSS (48 bytes, net.ipv4.tcp_min_snd_mss), each with up to 120 bytes of headers. */
#define GSO_RESERVE_SLOTS 1400
#define GSO_RESERVE_BYTES (256 << 10)

typedef struct {
  poller io; /* io.fd: the queue's netlink socket, owned by h */
  struct nfq_handle *h;
  struct nfq_q_handle *qh;
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
  /* received, bursts, batch verdicts, single verdicts, overflow drops, enobufs, errors, max burst, GSO packets, their
   * segments, GSO packets dropped (not TCP, or no room), checksums completed */
  double stats[12];
  int closed;
  uint32_t gso_mtu; /* 0: the kernel segments (no NFQA_CFG_F_GSO) */
  int whole;        /* GSO packets handed over uncut (meta whole = 1) */
  int32_t *group;   /* per entry: the index of the first entry of its packet (itself unless a segment) */
  gso_seg *segs;
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
  uint32_t skb = s->gso_mtu ? nfq_get_skbinfo(nfa) : 0;
  if (len >= 0 && (skb & NFQA_SKB_GSO) && s->whole) {
    s->stats[8]++;
    gso_plan g;
    if (gso_plan_tcp(payload, (size_t)len, s->gso_mtu, &g, 1) != 0) {
      nfq_set_verdict(qh, id, NF_DROP, 0, NULL);
      s->stats[10]++;
      return 0;
    }
    s->stats[9] += g.n;
  } else if (len >= 0 && (skb & NFQA_SKB_GSO)) {
    s->stats[8]++;
    int n = gso_segment(payload, (size_t)len, s->gso_mtu, s->arena + s->arena_used, s->arena_size - s->arena_used, s->max_batch - s->count,
                        s->segs);
    if (n < 0) {
      /* Not TCP (UDP GSO does not say where its datagrams end), or no room: fail closed. */
      nfq_set_verdict(qh, id, NF_DROP, 0, NULL);
      s->stats[10]++;
      return 0;
    }
    uint32_t mark = nfq_get_nfmark(nfa), in = nfq_get_indev(nfa), out = nfq_get_outdev(nfa);
    int first = s->count;
    for (int k = 0; k < n; k++) {
      int32_t *m = s->meta + (size_t)s->count * META;
      m[0] = (int32_t)(s->arena_used + s->segs[k].offset);
      m[1] = (int32_t)s->segs[k].length;
      m[2] = (int32_t)id;
      m[3] = (int32_t)mark;
      m[4] = (int32_t)in;
      m[5] = (int32_t)out;
      m[6] = 0;
      s->group[s->count] = first;
      s->count++;
    }
    s->arena_used += s->segs[n - 1].offset + ((s->segs[n - 1].length + 7) & ~(size_t)7);
    s->stats[9] += n;
    return 0;
  }
  if (len < 0 || s->count >= s->max_batch || s->arena_used + (size_t)len > s->arena_size) {
    /* No room in this burst: the overlay fails closed rather than letting the packet pass unprocessed. */
    nfq_set_verdict(qh, id, NF_DROP, 0, NULL);
    s->stats[4]++;
    return 0;
  }
  memcpy(s->arena + s->arena_used, payload, (size_t)len);
  int whole = (skb & NFQA_SKB_GSO) != 0;
  if (!whole && (skb & NFQA_SKB_CSUMNOTREADY) && gso_complete_checksum(s->arena + s->arena_used, (size_t)len) == 0) s->stats[11]++;
  int32_t *m = s->meta + (size_t)s->count * META;
  m[0] = (int32_t)s->arena_used;
  m[1] = len;
  m[2] = (int32_t)id;
  m[3] = (int32_t)nfq_get_nfmark(nfa);
  m[4] = (int32_t)nfq_get_indev(nfa);
  m[5] = (int32_t)nfq_get_outdev(nfa);
  m[6] = whole;
  if (s->group) s->group[s->count] = s->count;
  s->arena_used += ((size_t)len + 7) & ~(size_t)7;
  s->count++;
  return 0;
}

/* The one verdict of a packet cut into entries first..last (a GSO source): accept only if every segment was accepted
 * unchanged; anything else (drop, replace, re-mark, defer) drops the packet. */
static void issue_group(nfqsrc *s, int first, int last) {
  int accept = 1;
  for (int i = first; i <= last; i++) {
    const int32_t *v = s->verdicts + (size_t)i * VERD;
    if (v[0] != 1 || v[3] != 0) accept = 0;
    if (v[0] == 3 || v[0] == 2 || v[3] != 0) s->stats[6]++;
  }
  nfq_set_verdict(s->qh, (uint32_t)s->meta[first * META + 2], accept ? NF_ACCEPT : NF_DROP, 0, NULL);
  s->stats[3]++;
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
    if (s->group && (i + 1 < n && s->group[i + 1] == i)) {
      int last = i + 1;
      while (last + 1 < n && s->group[last + 1] == i) last++;
      issue_group(s, i, last);
      i = last;
      continue;
    }
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
    ssize_t r = recv(s->io.fd, s->rx, s->rx_size, MSG_DONTWAIT);
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
    if (s->gso_mtu && (s->count + GSO_RESERVE_SLOTS > s->max_batch || s->arena_used + GSO_RESERVE_BYTES > s->arena_size)) break;
  }
  if (s->count == 0) return;
  s->stats[1]++;
  if (s->count > s->stats[7]) s->stats[7] = s->count;
  /* Until JavaScript says otherwise, every packet is dropped (a throw fails closed). */
  for (int i = 0; i < s->count; i++) {
    s->verdicts[i * VERD] = 0;
    s->verdicts[i * VERD + 3] = 0;
  }
  if (poller_call(&s->io, s->count, "callback") != 0) {
    for (int i = 0; i < s->count; i++) s->verdicts[i * VERD] = 0;
    s->stats[6]++;
  }
  issue_verdicts(s);
}

static void on_poll_closed(uv_handle_t *h) {
  nfqsrc *s = h->data;
  s->io.handle_live = 0;
  if (s->io.finalized) {
    free(s->rx);
    free(s->group);
    free(s->segs);
    free(s);
  }
}

/* Stops reading and gives the queue back to the kernel (packets still queued are dropped by it). */
static void nfq_shut(nfqsrc *s) {
  s->closed = 1;
  poller_stop(&s->io, on_poll_closed);
  if (s->qh) nfq_destroy_queue(s->qh);
  if (s->h) nfq_close(s->h);
}

static void nfq_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  nfqsrc *s = data;
  if (!s->closed) nfq_shut(s);
  s->io.finalized = 1;
  /* Still in libuv's hands (closing): on_poll_closed frees it. The arenas are owned by their ArrayBuffers. */
  if (s->io.handle_live) return;
  free(s->rx);
  free(s->group);
  free(s->segs);
  free(s);
}

/* new NfqSource(queue, maxBatch, arenaBytes, rcvbufBytes, queueMaxlen, gsoMtu, whole) */
static napi_value nfq_new(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7], self;
  CHECK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  uint32_t queue = 0, max_batch = 256, arena = 1 << 20, rcvbuf = 8 << 20, maxlen = 4096, gso_mtu = 0;
  bool whole = false;
  napi_get_value_uint32(env, argv[0], &queue);
  if (argc > 1) napi_get_value_uint32(env, argv[1], &max_batch);
  if (argc > 2) napi_get_value_uint32(env, argv[2], &arena);
  if (argc > 3) napi_get_value_uint32(env, argv[3], &rcvbuf);
  if (argc > 4) napi_get_value_uint32(env, argv[4], &maxlen);
  if (argc > 5) napi_get_value_uint32(env, argv[5], &gso_mtu);
  if (argc > 6) napi_get_value_bool(env, argv[6], &whole);
  if (max_batch < 1 || max_batch > 65536 || arena < 65536) {
    napi_throw_range_error(env, NULL, "ntmdp: bad batch or arena size");
    return NULL;
  }
  if (gso_mtu != 0 && (gso_mtu < 576 || gso_mtu > 65535 || max_batch < 2 * GSO_RESERVE_SLOTS || arena < 4 * GSO_RESERVE_BYTES)) {
    napi_throw_range_error(env, NULL, "ntmdp: a GSO source needs an MTU of 576..65535, 2,800 entries and 1 MiB of arena");
    return NULL;
  }
  nfqsrc *s = calloc(1, sizeof *s);
  if (!s) return throw_errno(env, "ntmdp: calloc", ENOMEM);
  s->io.env = env;
  s->max_batch = (int)max_batch;
  s->arena_size = arena;
  s->out_size = arena;
  s->rx_size = 0x10000 + 4096;
  s->arena = malloc(arena);
  s->out = malloc(arena);
  s->meta = calloc(max_batch, sizeof(int32_t) * META);
  s->verdicts = calloc(max_batch, sizeof(int32_t) * VERD);
  s->rx = malloc(s->rx_size);
  if (gso_mtu) {
    s->group = calloc(max_batch, sizeof *s->group);
    s->segs = calloc(max_batch, sizeof *s->segs);
  }
  if (!s->arena || !s->out || !s->meta || !s->verdicts || !s->rx || (gso_mtu && (!s->group || !s->segs))) return throw_errno(env, "ntmdp: malloc", ENOMEM);
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
  /* Kernels without NFQA_CFG_F_GSO (before 3.10) refuse it: they segment first, as for a source without GSO. */
  if (gso_mtu && nfq_set_queue_flags(s->qh, NFQA_CFG_F_GSO, NFQA_CFG_F_GSO) == 0) {
    s->gso_mtu = gso_mtu;
    s->whole = whole;
  }
  s->io.fd = nfq_fd(s->h);
  int one = 1;
  setsockopt(s->io.fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
  int rb = (int)rcvbuf;
  if (setsockopt(s->io.fd, SOL_SOCKET, SO_RCVBUFFORCE, &rb, sizeof rb) < 0) setsockopt(s->io.fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
  CHECK(napi_wrap(env, self, s, nfq_free, NULL, NULL));

  CHECK(expose_buffer(env, self, "arena", s->arena, arena));
  CHECK(expose_buffer(env, self, "out", s->out, arena));
  CHECK(expose_array(env, self, "meta", s->meta, (size_t)max_batch * META, napi_int32_array));
  CHECK(expose_array(env, self, "verdicts", s->verdicts, (size_t)max_batch * VERD, napi_int32_array));
  CHECK(poller_init(&s->io, env, "ntmdp.nfq"));
  return self;
}

/* start(callback(count)) */
static napi_value nfq_start(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  nfqsrc *s = unwrap_this(env, info, &argc, argv);
  if (!s || argc < 1) return NULL;
  if (s->closed) {
    napi_throw_error(env, NULL, "ntmdp: source is closed");
    return NULL;
  }
  CHECK(poller_start(&s->io, argv[0], s, on_poll));
  return NULL;
}

/* settle(id, verdict, mark, payload?) for a deferred packet */
static napi_value nfq_settle(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  nfqsrc *s = unwrap_this(env, info, &argc, argv);
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
  nfqsrc *s = unwrap_this(env, info, &argc, NULL);
  if (!s || s->closed) return NULL;
  nfq_shut(s);
  s->qh = NULL;
  s->h = NULL;
  poller_release(&s->io);
  return NULL;
}

static napi_value nfq_stats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  nfqsrc *s = unwrap_this(env, info, &argc, NULL);
  if (!s) return NULL;
  static const char *const names[12] = {"received",    "bursts",      "batchVerdicts", "singleVerdicts", "overflowDrops",     "enobufs",
                                        "errors",      "maxBurst",    "gsoPackets",    "gsoSegments",    "gsoDrops",          "checksumsCompleted"};
  napi_value o = stats_object(env, names, s->stats, 12), v;
  double mss[2];
  gso_stats(&mss[0], &mss[1]);
  napi_create_double(env, mss[0], &v);
  napi_set_named_property(env, o, "mssLearnt", v);
  napi_create_double(env, mss[1], &v);
  napi_set_named_property(env, o, "mssDefaulted", v);
  napi_get_boolean(env, s->gso_mtu != 0, &v);
  napi_set_named_property(env, o, "gso", v);
  napi_create_int32(env, s->deferred, &v);
  napi_set_named_property(env, o, "deferredPending", v);
  return o;
}

void nfqueue_register(napi_env env, napi_value exports) {
  static const napi_property_descriptor methods[] = {
      {"start", NULL, nfq_start, NULL, NULL, NULL, napi_default, NULL},
      {"settle", NULL, nfq_settle, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, nfq_close_js, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, nfq_stats, NULL, NULL, NULL, napi_default, NULL},
  };
  define_class(env, exports, "NfqSource", nfq_new, methods, sizeof methods / sizeof methods[0]);
}
