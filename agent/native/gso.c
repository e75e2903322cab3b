/*
 * gso.c: what a NIC's TSO does, for the packets NFQUEUE hands over unsegmented (NFQA_CFG_F_GSO, nfqueue.c): one queue
 * round trip then carries up to 64 KB of a TCP stream instead of one 1,400-byte packet, and the addon cuts it into
 * segments before the data plane seals them (the kernel's tcp_gso_segment, net/ipv4/tcp_offload.c, does the same:
 * sequence numbers advanced, FIN and PSH on the last segment only, CWR on the first only, IPv4 IDs incremented, every
 * checksum complete). Packets the kernel left with a partial checksum (NFQA_SKB_CSUMNOTREADY: the pseudo-header sum
 * only, the rest for a NIC to fill) get theirs completed here.
 *
 * The segment size. NFQUEUE does not say the packet's gso_size, so the segments are as large as the peer allows and
 * the tunnel carries: the MSS the receiving end announced in its SYN (learnt here as the SYN went to it through
 * inject.c, RFC 9293 §3.7.1), less the TCP options every segment repeats (RFC 6691), and no larger than the tunnel's
 * inner MTU. A flow whose SYN we did not see (started before the data plane) gets the default send MSS of RFC 9293
 * §3.7.1: 536 bytes (IPv4) or 1,220 (IPv6). IPv6 packets with extension headers are not segmented (nothing on our
 * paths makes them GSO).
 *
 * Threading: the JS thread only (the MSS table is this process's; the addon runs one data plane per process).
 */
#define _GNU_SOURCE
#include "ntmdp.h"

#include <string.h>

#define PROTO_TCP 6
#define PROTO_UDP 17
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_PSH 0x08
#define TCP_CWR 0x80

static inline uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static inline uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static inline void put16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* RFC 1071 sum of `len` bytes added to `sum` (not folded). */
static uint64_t sum_bytes(const uint8_t *p, size_t len, uint64_t sum) {
  while (len >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    /* Sum 32-bit halves in native order; folding at the end makes the byte order come out right (RFC 1071 §2(B)). */
    sum += (w & 0xffffffffu) + (w >> 32);
    p += 8;
    len -= 8;
  }
  while (len >= 2) {
    uint16_t h;
    memcpy(&h, p, 2);
    sum += h;
    p += 2;
    len -= 2;
  }
  if (len) {
    uint16_t h = 0;
    memcpy(&h, p, 1);
    sum += h;
  }
  return sum;
}

/* Folds to 16 bits and complements; the result is in the byte order the bytes were summed in (native). */
static uint16_t fold(uint64_t sum) {
  sum = (sum & 0xffffffffu) + (sum >> 32);
  sum = (sum & 0xffffffffu) + (sum >> 32);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

/* The pseudo-header (RFC 793 / RFC 8200 §8.1) of an L4 segment of `l4len` bytes, protocol `proto`. */
static uint64_t pseudo(const uint8_t *ip, int v6, uint32_t proto, uint32_t l4len) {
  uint8_t tail[8] = {0};
  put32(tail, l4len);
  put32(tail + 4, proto);
  uint64_t s = v6 ? sum_bytes(ip + 8, 32, 0) : sum_bytes(ip + 12, 8, 0);
  return sum_bytes(tail, 8, s);
}

/* Writes the complete L4 checksum at `field` over l4[0..l4len) with the field zeroed first. */
static void l4_checksum(const uint8_t *ip, int v6, uint32_t proto, uint8_t *l4, uint32_t l4len, uint8_t *field) {
  field[0] = field[1] = 0;
  uint16_t c = fold(sum_bytes(l4, l4len, pseudo(ip, v6, proto, l4len)));
  if (proto == PROTO_UDP && c == 0) c = 0xffff; /* RFC 768: 0 means "no checksum" */
  memcpy(field, &c, 2);
}

static void ip4_header_checksum(uint8_t *ip, size_t ihl) {
  ip[10] = ip[11] = 0;
  uint16_t c = fold(sum_bytes(ip, ihl, 0));
  memcpy(ip + 10, &c, 2);
}

/* ---- the MSS each end announced ------------------------------------------------------------------------------- */

#define MSS_SLOTS 4096

typedef struct {
  uint8_t used, v6;
  uint16_t mss;
  uint16_t sport, dport; /* of the SYN: the announcing end's port first */
  uint8_t src[16], dst[16];
} mss_entry;

static mss_entry mss_table[MSS_SLOTS];
static double mss_stats[2]; /* learnt, defaulted */

static uint32_t flow_hash(int v6, const uint8_t *src, const uint8_t *dst, uint32_t sport, uint32_t dport) {
  uint32_t h = 2166136261u ^ (uint32_t)v6;
  size_t n = v6 ? 16 : 4;
  for (size_t i = 0; i < n; i++) h = (h ^ src[i]) * 16777619u;
  for (size_t i = 0; i < n; i++) h = (h ^ dst[i]) * 16777619u;
  h = (h ^ sport) * 16777619u;
  h = (h ^ dport) * 16777619u;
  return h & (MSS_SLOTS - 1);
}

/* Where an IP packet's TCP header starts (no IPv4 fragments, no IPv6 extension headers), else 0. */
static size_t tcp_offset(const uint8_t *p, size_t len, int *v6) {
  if (len >= 20 && (p[0] >> 4) == 4) {
    size_t ihl = (size_t)(p[0] & 15) * 4;
    if (ihl < 20 || p[9] != PROTO_TCP || (be16(p + 6) & 0x3fff) != 0 || len < ihl + 20) return 0;
    *v6 = 0;
    return ihl;
  }
  if (len >= 60 && (p[0] >> 4) == 6 && p[6] == PROTO_TCP) {
    *v6 = 1;
    return 40;
  }
  return 0;
}

void tcp_mss_learn(const uint8_t *p, size_t len) {
  int v6 = 0;
  size_t t = tcp_offset(p, len, &v6);
  if (t == 0 || !(p[t + 13] & TCP_SYN)) return;
  size_t thl = (size_t)(p[t + 12] >> 4) * 4;
  if (thl < 20 || t + thl > len) return;
  /* RFC 9293 §3.2: kind 0 ends the list, kind 1 is one byte, the others are kind, length, data. */
  uint32_t mss = 0;
  for (size_t o = t + 20; o < t + thl;) {
    uint8_t kind = p[o];
    if (kind == 0) break;
    if (kind == 1) {
      o++;
      continue;
    }
    if (o + 1 >= t + thl || p[o + 1] < 2 || o + p[o + 1] > t + thl) break;
    if (kind == 2 && p[o + 1] == 4) mss = be16(p + o + 2);
    o += p[o + 1];
  }
  if (mss == 0) return; /* no option: the receiver of this SYN uses the default, and so do we */
  const uint8_t *src = v6 ? p + 8 : p + 12, *dst = v6 ? p + 24 : p + 16;
  uint32_t sport = be16(p + t), dport = be16(p + t + 2);
  mss_entry *e = &mss_table[flow_hash(v6, src, dst, sport, dport)];
  e->used = 1;
  e->v6 = (uint8_t)v6;
  e->mss = (uint16_t)mss;
  e->sport = (uint16_t)sport;
  e->dport = (uint16_t)dport;
  memset(e->src, 0, 16);
  memset(e->dst, 0, 16);
  memcpy(e->src, src, v6 ? 16 : 4);
  memcpy(e->dst, dst, v6 ? 16 : 4);
  mss_stats[0]++;
}

/* The MSS the destination of this packet announced in its SYN to the packet's source; the RFC default when unknown. */
static uint32_t peer_mss(int v6, const uint8_t *src, const uint8_t *dst, uint32_t sport, uint32_t dport, int counted) {
  mss_entry *e = &mss_table[flow_hash(v6, dst, src, dport, sport)];
  size_t n = v6 ? 16 : 4;
  if (e->used && e->v6 == v6 && e->sport == dport && e->dport == sport && memcmp(e->src, dst, n) == 0 && memcmp(e->dst, src, n) == 0)
    return e->mss;
  if (counted) mss_stats[1]++;
  return v6 ? 1220 : 536;
}

/* ---- segmentation -------------------------------------------------------------------------------------------- */

int gso_complete_checksum(uint8_t *p, size_t len) {
  int v6;
  size_t l4;
  uint32_t proto;
  if (len >= 20 && (p[0] >> 4) == 4) {
    v6 = 0;
    l4 = (size_t)(p[0] & 15) * 4;
    proto = p[9];
    if ((be16(p + 6) & 0x3fff) != 0) return -1;
  } else if (len >= 40 && (p[0] >> 4) == 6) {
    v6 = 1;
    l4 = 40;
    proto = p[6];
  } else return -1;
  if (proto == PROTO_TCP && len >= l4 + 20) l4_checksum(p, v6, proto, p + l4, (uint32_t)(len - l4), p + l4 + 16);
  else if (proto == PROTO_UDP && len >= l4 + 8) l4_checksum(p, v6, proto, p + l4, (uint32_t)(len - l4), p + l4 + 6);
  else return -1;
  return 0;
}

int gso_plan_tcp(const uint8_t *p, size_t len, uint32_t mtu, gso_plan *g, int counted) {
  int v6 = 0;
  size_t t = tcp_offset(p, len, &v6);
  if (t == 0) return -1;
  size_t thl = (size_t)(p[t + 12] >> 4) * 4;
  size_t hl = t + thl;
  if (thl < 20 || hl > len) return -1;
  size_t payload = len - hl;
  const uint8_t *src = v6 ? p + 8 : p + 12, *dst = v6 ? p + 24 : p + 16;
  uint32_t sport = be16(p + t), dport = be16(p + t + 2);
  /* RFC 6691: the announced MSS counts data beside a 20-byte TCP header; options come out of it. */
  uint32_t mss = peer_mss(v6, src, dst, sport, dport, counted) + 20;
  size_t seg = mss > thl ? mss - thl : 0;
  if (mtu > hl && mtu - hl < seg) seg = mtu - hl;
  if (seg == 0) return -1;
  g->v6 = v6;
  g->t = t;
  g->thl = thl;
  g->hl = hl;
  g->payload = payload;
  g->seg = seg;
  g->n = payload == 0 ? 1 : (int)((payload + seg - 1) / seg);
  return 0;
}

size_t gso_write_segment(const uint8_t *p, const gso_plan *g, int k, uint8_t *o) {
  size_t hl = g->hl, t = g->t;
  size_t chunk = k == g->n - 1 ? g->payload - g->seg * (size_t)k : g->seg;
  memcpy(o, p, hl);
  memcpy(o + hl, p + hl + g->seg * (size_t)k, chunk);
  uint8_t *th = o + t;
  put32(th + 4, be32(p + t + 4) + (uint32_t)(g->seg * (size_t)k));
  uint8_t f = p[t + 13];
  if (k != g->n - 1) f &= (uint8_t)~(TCP_FIN | TCP_PSH);
  if (k != 0) f &= (uint8_t)~TCP_CWR;
  th[13] = f;
  if (g->v6) put16(o + 4, (uint32_t)(g->thl + chunk));
  else {
    put16(o + 2, (uint32_t)(hl + chunk));
    put16(o + 4, be16(p + 4) + (uint32_t)k);
    ip4_header_checksum(o, t);
  }
  l4_checksum(o, g->v6, PROTO_TCP, th, (uint32_t)(g->thl + chunk), th + 16);
  return hl + chunk;
}

int gso_segment(const uint8_t *p, size_t len, uint32_t mtu, uint8_t *out, size_t room, int max_segs, gso_seg *segs) {
  gso_plan g;
  if (gso_plan_tcp(p, len, mtu, &g, 1) != 0 || g.n > max_segs) return -1;
  size_t need = 0;
  for (int k = 0; k < g.n; k++) need += (gso_segment_length(&g, k) + 7) & ~(size_t)7;
  if (need > room) return -1;
  size_t at = 0;
  for (int k = 0; k < g.n; k++) {
    segs[k].offset = at;
    segs[k].length = gso_write_segment(p, &g, k, out + at);
    at += (segs[k].length + 7) & ~(size_t)7;
  }
  return g.n;
}

void tcp_partial_checksum(uint8_t *ip, int v6, size_t l4len) {
  size_t t = v6 ? 40 : (size_t)(ip[0] & 15) * 4;
  uint16_t c = (uint16_t)~fold(pseudo(ip, v6, PROTO_TCP, (uint32_t)l4len));
  memcpy(ip + t + 16, &c, 2);
}

void ip4_checksum(uint8_t *ip) { ip4_header_checksum(ip, (size_t)(ip[0] & 15) * 4); }

void gso_stats(double *learnt, double *defaulted) {
  *learnt = mss_stats[0];
  *defaulted = mss_stats[1];
}

/* ---- JavaScript (tests: the segments checked against the TypeScript packet code) ---------------------------- */

/* gsoSegment(packet, mtu, out): the segments written into `out` as [offset, length, …], or null when not cut. */
static napi_value gso_segment_js(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], ret;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *in, *out;
  size_t ilen, olen;
  uint32_t mtu = 0;
  if (argc < 3 || bytes_of(env, argv[0], &in, &ilen) || napi_get_value_uint32(env, argv[1], &mtu) != napi_ok || bytes_of(env, argv[2], &out, &olen)) {
    napi_throw_type_error(env, NULL, "ntmdp: gsoSegment(Uint8Array, mtu, out)");
    return NULL;
  }
  static gso_seg segs[2048];
  int n = gso_segment(in, ilen, mtu, out, olen, 2048, segs);
  if (n < 0) {
    napi_get_null(env, &ret);
    return ret;
  }
  CHECK(napi_create_array_with_length(env, (size_t)n * 2, &ret));
  for (int k = 0; k < n; k++) {
    napi_value v;
    napi_create_int64(env, (int64_t)segs[k].offset, &v);
    napi_set_element(env, ret, (uint32_t)k * 2, v);
    napi_create_int64(env, (int64_t)segs[k].length, &v);
    napi_set_element(env, ret, (uint32_t)k * 2 + 1, v);
  }
  return ret;
}

/* tcpMssLearn(packet): as inject() does with every packet it hands the kernel. */
static napi_value mss_learn_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *in;
  size_t ilen;
  if (argc < 1 || bytes_of(env, argv[0], &in, &ilen)) {
    napi_throw_type_error(env, NULL, "ntmdp: tcpMssLearn(Uint8Array)");
    return NULL;
  }
  tcp_mss_learn(in, ilen);
  return NULL;
}

/* completeChecksum(packet): 0, or -1 when the packet is neither TCP nor UDP. */
static napi_value complete_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], ret;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *in;
  size_t ilen;
  if (argc < 1 || bytes_of(env, argv[0], &in, &ilen)) {
    napi_throw_type_error(env, NULL, "ntmdp: completeChecksum(Uint8Array)");
    return NULL;
  }
  napi_create_int32(env, gso_complete_checksum(in, ilen), &ret);
  return ret;
}

void gso_register(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "gsoSegment", NAPI_AUTO_LENGTH, gso_segment_js, NULL, &fn);
  napi_set_named_property(env, exports, "gsoSegment", fn);
  napi_create_function(env, "tcpMssLearn", NAPI_AUTO_LENGTH, mss_learn_js, NULL, &fn);
  napi_set_named_property(env, exports, "tcpMssLearn", fn);
  napi_create_function(env, "completeChecksum", NAPI_AUTO_LENGTH, complete_js, NULL, &fn);
  napi_set_named_property(env, exports, "completeChecksum", fn);
}
