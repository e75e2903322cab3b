/*
 * tun.c: TunWriter. The receiving end's counterpart of gso.c: decrypted TCP segments of one flow are coalesced, as a
 * NIC's GRO would (the kernel's tcp_gro_receive, net/ipv4/tcp_offload.c), into one packet of up to 64 KB, and written
 * to a TUN device opened with IFF_VNET_HDR. The virtio-net header in front of it (virtio 1.2 §5.1.6: gso_type
 * TCPV4/TCPV6, gso_size, csum_start/csum_offset with VIRTIO_NET_HDR_F_NEEDS_CSUM) tells the kernel what it is, so the
 * kernel routes, tracks (conntrack) and forwards it once and segments it only at the outgoing device, or hands it
 * whole to a local socket or a veth. A raw socket cannot take such a packet: the kernel would refuse it or send it as
 * one oversized datagram. TUNSETOFFLOAD (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) is what lets the device take them.
 *
 * What a write to the device is: a packet received on it, entering at PREROUTING; the device has no address and no
 * route points to it, so nothing is ever sent to it (the few IPv6 control packets the kernel may send on an up link
 * wait in its queue and are dropped when it is full). The device is not persistent: it goes when the process does.
 *
 * Coalescing rules (those of GRO): a segment joins the newest packet of its flow (addresses, ports) when it carries
 * data, its flags are ACK (and PSH), its sequence number follows, its acknowledgement number, window, TCP options,
 * IPv4 TOS / TTL / DF or IPv6 first word / hop limit are the same, it is no larger than the first segment (gso_size)
 * and the packet stays within 64 KB and 64 segments. A segment smaller than gso_size, or one with PSH, closes the
 * packet. Every other TCP packet (SYN, FIN, RST, pure ACKs, IPv4 options) goes as it is, in its place: each flow's packets keep their order, since a flow's later segment only ever joins its
 * newest packet and the packets are written in the order they were started. The segments' checksums are not checked
 * (the AEAD authenticated them, and the sender's gso.c made them complete); the coalesced packet's is left to the
 * kernel (partial: the pseudo-header's sum in the field). Packets that are not TCP are not taken (queue() returns 1):
 * the caller sends them through its raw socket, as it does IPv4 fragments and IPv6 packets with extension headers.
 *
 * Like RawInjector: queue(packet) copies into an arena, flush() writes everything queued, one writev per packet
 * (the coalesced payloads gathered from the arena). Threading: the JS thread only.
 */
#define _GNU_SOURCE
#include "ntmdp.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define TUN_ARENA (1 << 20)
#define TUN_MAX_ITEMS 256
#define TUN_MAX_SEGS 64
#define TUN_MAX_LEN 65535
#define TUN_SCAN 16 /* how many of the newest packets a segment looks through for its flow's */

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10

typedef struct {
  uint8_t *first; /* the first packet, headers and payload, in the arena */
  size_t len;     /* the whole packet's length so far */
  uint32_t hash;
  uint32_t next_seq;
  uint16_t iphl, thl, gso_size;
  uint8_t v6, open, psh;
  int segs;
  struct virtio_net_hdr vnet;
  struct iovec iov[TUN_MAX_SEGS + 1]; /* [0]: the vnet header; [1]: the first packet; then the payloads */
} tun_item;

typedef struct {
  int fd;
  int families; /* 1: IPv4, 2: IPv6 */
  char name[IFNAMSIZ];
  uint8_t *arena;
  size_t used;
  int count;
  tun_item *items;
  double stats[6]; /* queued, coalesced, writes, refused, lastErrno, flushes */
} tun_writer;

static inline uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static inline uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static inline void wr16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

/* Writes one queued packet (its headers completed first when segments joined it). */
static void tun_write_item(tun_writer *w, tun_item *it) {
  uint8_t *p = it->first;
  memset(&it->vnet, 0, sizeof it->vnet);
  if (it->segs > 1) {
    uint8_t *th = p + it->iphl;
    if (it->psh) th[13] |= TCP_PSH;
    if (it->v6) wr16(p + 4, (uint32_t)(it->len - 40));
    else {
      wr16(p + 2, (uint32_t)it->len);
      ip4_checksum(p);
    }
    tcp_partial_checksum(p, it->v6, it->len - it->iphl);
    it->vnet.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    it->vnet.gso_type = it->v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
    it->vnet.hdr_len = (uint16_t)(it->iphl + it->thl);
    it->vnet.gso_size = it->gso_size;
    it->vnet.csum_start = it->iphl;
    it->vnet.csum_offset = 16;
  }
  it->iov[0] = (struct iovec){.iov_base = &it->vnet, .iov_len = sizeof it->vnet};
  ssize_t r = writev(w->fd, it->iov, it->segs + 1);
  w->stats[2]++;
  if (r < 0) {
    w->stats[3]++;
    w->stats[4] = errno;
  }
}

static int tun_flush_all(tun_writer *w) {
  double before = w->stats[3];
  for (int i = 0; i < w->count; i++) tun_write_item(w, &w->items[i]);
  w->count = 0;
  w->used = 0;
  w->stats[5]++;
  return (int)(w->stats[3] - before);
}

static uint32_t flow_key(const uint8_t *p, int v6, size_t iphl) {
  uint32_t h = 2166136261u;
  const uint8_t *a = v6 ? p + 8 : p + 12;
  size_t n = v6 ? 32 : 8;
  for (size_t i = 0; i < n; i++) h = (h ^ a[i]) * 16777619u;
  for (size_t i = 0; i < 4; i++) h = (h ^ p[iphl + i]) * 16777619u;
  return h;
}

static int same_flow(const tun_item *it, const uint8_t *p, int v6, size_t iphl) {
  if (it->v6 != v6 || it->iphl != iphl) return 0;
  const uint8_t *q = it->first;
  size_t off = v6 ? 8 : 12, n = v6 ? 32 : 8;
  return memcmp(q + off, p + off, n) == 0 && memcmp(q + it->iphl, p + iphl, 4) == 0;
}

/* Whether segment p (iphl, thl, payload given) can be appended to `it`, the newest packet of its flow. */
static int can_join(const tun_item *it, const uint8_t *p, int v6, size_t iphl, size_t thl, size_t payload) {
  const uint8_t *q = it->first;
  if (!it->open || it->thl != thl || it->segs >= TUN_MAX_SEGS || payload > it->gso_size || it->len + payload > TUN_MAX_LEN) return 0;
  const uint8_t *th = p + iphl, *qh = q + it->iphl;
  if (rd32(th + 4) != it->next_seq) return 0;
  /* Acknowledgement number, flags (PSH aside), window; then the options byte for byte (timestamps included). */
  if (memcmp(th + 8, qh + 8, 4) != 0 || ((th[13] ^ qh[13]) & (uint8_t)~TCP_PSH) != 0 || memcmp(th + 14, qh + 14, 2) != 0) return 0;
  if (thl > 20 && memcmp(th + 20, qh + 20, thl - 20) != 0) return 0;
  if (v6) return memcmp(p, q, 4) == 0 && p[7] == q[7];
  return p[1] == q[1] && p[8] == q[8] && (p[6] & 0x40) == (q[6] & 0x40);
}

/* 0: queued; 1: not for this device (not TCP, or a family it does not carry); -errno. */
static int tun_queue(tun_writer *w, const uint8_t *p, size_t len) {
  int v6;
  size_t iphl;
  int simple = 1; /* a header GRO would coalesce behind */
  if (len >= 20 && (p[0] >> 4) == 4) {
    if (!(w->families & 1) || p[9] != 6) return 1;
    v6 = 0;
    iphl = (size_t)(p[0] & 15) * 4;
    size_t tot = rd16(p + 2);
    if (iphl < 20 || tot < iphl + 20 || tot > len) return -EINVAL;
    len = tot;
    if ((rd16(p + 6) & 0x3fff) != 0) return 1; /* a fragment: no TCP header to read in most; the raw socket takes it */
    if (iphl != 20) simple = 0;
  } else if (len >= 40 && (p[0] >> 4) == 6) {
    if (!(w->families & 2)) return 1;
    if (p[6] != 6) return 1; /* extension headers: not ours to parse; the raw socket takes them */
    v6 = 1;
    iphl = 40;
    size_t tot = rd16(p + 4) + 40;
    if (tot < 60 || tot > len) return -EINVAL;
    len = tot;
  } else return 1;
  size_t thl = (size_t)(p[iphl + 12] >> 4) * 4;
  if (thl < 20 || iphl + thl > len) return -EINVAL;
  size_t payload = len - iphl - thl;
  uint8_t flags = p[iphl + 13];
  /* A SYN going to the LAN (or this host) tells what the segments cut from its peer's GSO packets may carry (gso.c). */
  tcp_mss_learn(p, len);
  if (len > TUN_MAX_LEN) return -EMSGSIZE;
  int joinable = simple && payload > 0 && (flags & (uint8_t)~TCP_PSH) == TCP_ACK;
  uint32_t h = flow_key(p, v6, iphl);
  /* The newest packet of this flow among the last few: a segment may join it, anything else closes it. */
  tun_item *newest = NULL;
  for (int i = w->count - 1; i >= 0 && i >= w->count - TUN_SCAN; i--) {
    tun_item *it = &w->items[i];
    if (it->hash == h && same_flow(it, p, v6, iphl)) {
      newest = it;
      break;
    }
  }
  if (newest && joinable && can_join(newest, p, v6, iphl, thl, payload) && w->used + payload <= TUN_ARENA) {
    uint8_t *copy = w->arena + w->used;
    memcpy(copy, p + iphl + thl, payload);
    w->used += (payload + 7) & ~(size_t)7;
    newest->iov[newest->segs + 1] = (struct iovec){.iov_base = copy, .iov_len = payload};
    newest->segs++;
    newest->len += payload;
    newest->next_seq += (uint32_t)payload;
    if (flags & TCP_PSH) newest->psh = 1;
    if (payload < newest->gso_size || (flags & TCP_PSH)) newest->open = 0;
    w->stats[0]++;
    w->stats[1]++;
    return 0;
  }
  if (newest) newest->open = 0;
  if (w->count == TUN_MAX_ITEMS || w->used + len > TUN_ARENA) {
    tun_flush_all(w);
    newest = NULL;
  }
  tun_item *it = &w->items[w->count++];
  uint8_t *copy = w->arena + w->used;
  memcpy(copy, p, len);
  w->used += (len + 7) & ~(size_t)7;
  it->first = copy;
  it->len = len;
  it->hash = h;
  it->v6 = (uint8_t)v6;
  it->iphl = (uint16_t)iphl;
  it->thl = (uint16_t)thl;
  it->gso_size = (uint16_t)payload;
  it->next_seq = rd32(p + iphl + 4) + (uint32_t)payload;
  it->segs = 1;
  it->psh = 0;
  it->open = (uint8_t)(joinable && !(flags & TCP_PSH));
  it->iov[1] = (struct iovec){.iov_base = copy, .iov_len = len};
  w->stats[0]++;
  return 0;
}

/* ---- JavaScript -------------------------------------------------------------------------------------------- */

static void tun_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  tun_writer *w = data;
  if (w->fd >= 0) close(w->fd);
  free(w->arena);
  free(w->items);
  free(w);
}

/* Opens the device: IFF_TUN | IFF_NO_PI | IFF_VNET_HDR, the header of struct virtio_net_hdr's size, the offloads, up. */
static int tun_open(tun_writer *w, const char *name) {
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
  memcpy(ifr.ifr_name, name, strnlen(name, IFNAMSIZ - 1));
  int hdr = sizeof(struct virtio_net_hdr);
  int e = 0;
  if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 ||
      ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)) < 0)
    e = errno;
  if (!e) {
    memcpy(w->name, ifr.ifr_name, IFNAMSIZ);
    w->name[IFNAMSIZ - 1] = 0;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) s = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq up;
    memset(&up, 0, sizeof up);
    memcpy(up.ifr_name, w->name, IFNAMSIZ);
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &up) < 0) e = errno;
    else {
      up.ifr_flags |= IFF_UP;
      if (ioctl(s, SIOCSIFFLAGS, &up) < 0) e = errno;
    }
    if (s >= 0) close(s);
  }
  if (e) {
    close(fd);
    return -e;
  }
  w->fd = fd;
  return 0;
}

/* new TunWriter(name, families): name may hold "%d" (the kernel picks the number); families 1 IPv4, 2 IPv6, 3 both. */
static napi_value tun_new(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], self;
  CHECK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  char name[IFNAMSIZ] = {0};
  size_t n = 0;
  uint32_t families = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &n) != napi_ok ||
      napi_get_value_uint32(env, argv[1], &families) != napi_ok || families < 1 || families > 3) {
    napi_throw_type_error(env, NULL, "ntmdp: new TunWriter(name, families 1..3)");
    return NULL;
  }
  tun_writer *w = calloc(1, sizeof *w);
  if (w) {
    w->arena = malloc(TUN_ARENA);
    w->items = calloc(TUN_MAX_ITEMS, sizeof *w->items);
  }
  if (!w || !w->arena || !w->items) {
    if (w) {
      free(w->arena);
      free(w->items);
    }
    free(w);
    return throw_errno(env, "ntmdp: malloc", ENOMEM);
  }
  w->fd = -1;
  w->families = (int)families;
  int rc = tun_open(w, name);
  if (rc < 0) {
    free(w->arena);
    free(w->items);
    free(w);
    return throw_errno(env, "ntmdp: TUN with IFF_VNET_HDR and TSO (needs CAP_NET_ADMIN and /dev/net/tun)", -rc);
  }
  napi_value nm;
  CHECK(napi_create_string_utf8(env, w->name, NAPI_AUTO_LENGTH, &nm));
  CHECK(napi_set_named_property(env, self, "name", nm));
  CHECK(napi_wrap(env, self, w, tun_free, NULL, NULL));
  return self;
}

/* queue(packet): 0 queued, 1 not taken (not TCP, or a family this device does not carry), or -errno */
static napi_value tun_queue_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], ret;
  tun_writer *w = unwrap_this(env, info, &argc, argv);
  uint8_t *p;
  size_t len;
  if (!w || argc < 1 || bytes_of(env, argv[0], &p, &len)) {
    napi_throw_type_error(env, NULL, "ntmdp: queue(Uint8Array)");
    return NULL;
  }
  napi_create_int32(env, w->fd < 0 ? 1 : tun_queue(w, p, len), &ret);
  return ret;
}

/* flush(): how many packets the kernel refused */
static napi_value tun_flush_js(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  napi_value ret;
  tun_writer *w = unwrap_this(env, info, &argc, NULL);
  if (!w) return NULL;
  napi_create_int32(env, w->count ? tun_flush_all(w) : 0, &ret);
  return ret;
}

static napi_value tun_stats_js(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  tun_writer *w = unwrap_this(env, info, &argc, NULL);
  if (!w) return NULL;
  static const char *const names[6] = {"queued", "coalesced", "writes", "refused", "lastErrno", "flushes"};
  return stats_object(env, names, w->stats, 6);
}

/* close(): what is queued is written, then the device goes (it is not persistent). */
static napi_value tun_close_js(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  tun_writer *w = unwrap_this(env, info, &argc, NULL);
  if (!w) return NULL;
  if (w->count) tun_flush_all(w);
  if (w->fd >= 0) close(w->fd);
  w->fd = -1;
  return NULL;
}

void tun_register(napi_env env, napi_value exports) {
  static const napi_property_descriptor methods[] = {
      {"queue", NULL, tun_queue_js, NULL, NULL, NULL, napi_default, NULL},
      {"flush", NULL, tun_flush_js, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, tun_stats_js, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, tun_close_js, NULL, NULL, NULL, napi_default, NULL},
  };
  define_class(env, exports, "TunWriter", tun_new, methods, sizeof methods / sizeof methods[0]);
}
