// The GSO queue's segmentation (agent/native/gso.c), checked with the TypeScript packet code: a 60 KB TCP packet as
// NFQUEUE hands it over with NFQA_CFG_F_GSO (one IP header, partial checksum) must come out as the segments a TSO NIC
// would send: each within the tunnel MTU and the MSS the receiver announced (RFC 6691: options come out of it),
// consecutive sequence numbers, FIN/PSH on the last only, CWR on the first only, IPv4 IDs counting up, every checksum
// complete, and the payload unchanged. Without the receiver's SYN, RFC 9293's default MSS applies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { nativeAddon, nativeLoadError } from '../../agent/src/native.js';
import { buildPacket } from '../../agent/src/dataplane/packet/testing/build.js';
import { PacketInfo, parsePacket } from '../../agent/src/dataplane/packet/parse.js';
import { verifyChecksums } from '../../agent/src/dataplane/packet/sums.js';
import { put16, u16 } from '../../agent/src/dataplane/packet/checksum.js';

// The test command builds the addon: one that does not load is a failure here, not a reason to skip.
const loaded = nativeAddon();
assert.ok(loaded, `ntmdp.node does not load: ${nativeLoadError()?.message}`);
const addon = loaded;
const FIN = 0x01;
const SYN = 0x02;
const PSH = 0x08;
const ACK = 0x10;
const CWR = 0x80;
/** Timestamps (kind 8, 10 bytes) after two NOPs: the 12 bytes of options Linux puts on every data segment. */
const TIMESTAMPS = Uint8Array.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);

const families = {
  4: { a: Uint8Array.from([198, 18, 0, 7]), b: Uint8Array.from([192, 168, 1, 10]), ipHeader: 20, defaultMss: 536 },
  6: { a: Buffer.from('fd4e544d000000000000000000000007', 'hex'), b: Buffer.from('fd000001000000000000000000000010', 'hex'), ipHeader: 40, defaultMss: 1220 },
} as const;

function mssOption(mss: number): Uint8Array {
  return Uint8Array.from([2, 4, mss >> 8, mss & 0xff]);
}

/** The GSO packet a → b, as the kernel queues it: whole, with only the pseudo-header in the TCP checksum field. */
function gsoPacket(f: 4 | 6, payload: Uint8Array, seq: number, flags: number, port: number): Uint8Array {
  const { a, b } = families[f];
  const pkt = buildPacket({ src: a, dst: b, protocol: 'tcp', srcPort: port, dstPort: 5201, seq, ack: 99, tcpFlags: flags, tcpOptions: TIMESTAMPS, payload, id: 0xfff0 });
  const info = new PacketInfo();
  assert.ok(parsePacket(pkt, info).ok);
  put16(pkt, info.l4Offset + 16, 0x1234); // not a finished checksum: the addon must not rely on it
  return pkt;
}

function segments(pkt: Uint8Array, mtu: number): Uint8Array[] {
  const out = new Uint8Array(pkt.length * 2 + 200 * 64);
  const r = addon.gsoSegment(pkt, mtu, out);
  assert.ok(r, 'the packet was cut');
  const segs: Uint8Array[] = [];
  for (let k = 0; k < r.length; k += 2) segs.push(out.subarray(r[k]!, r[k]! + r[k + 1]!));
  return segs;
}

function check(f: 4 | 6, pkt: Uint8Array, segs: Uint8Array[], payloadPerSegment: number, seq: number, flags: number): void {
  const info = new PacketInfo();
  assert.ok(parsePacket(pkt, info).ok);
  const payload = pkt.subarray(info.payloadOffset, info.end);
  assert.equal(segs.length, Math.ceil(payload.length / payloadPerSegment));
  const joined: Uint8Array[] = [];
  segs.forEach((s, k) => {
    const si = new PacketInfo();
    assert.ok(parsePacket(s, si).ok, `segment ${k} parses`);
    const c = verifyChecksums(s, si);
    assert.ok(c.ip && c.l4, `segment ${k}: checksums complete (${JSON.stringify(c)})`);
    const data = s.subarray(si.payloadOffset, si.end);
    assert.equal(data.length, k < segs.length - 1 ? payloadPerSegment : payload.length - payloadPerSegment * k, `segment ${k} payload`);
    joined.push(data);
    const t = si.l4Offset;
    assert.equal(new DataView(s.buffer, s.byteOffset).getUint32(t + 4), (seq + payloadPerSegment * k) >>> 0, `segment ${k} sequence number`);
    const want = (flags & ~(k < segs.length - 1 ? FIN | PSH : 0) & ~(k > 0 ? CWR : 0)) & 0xff;
    assert.equal(s[t + 13], want, `segment ${k} flags`);
    assert.deepEqual(s.subarray(t + 20, t + 32), TIMESTAMPS, 'options repeated in every segment');
    if (f === 4) assert.equal(u16(s, 4), (0xfff0 + k) & 0xffff, 'IPv4 IDs count up');
  });
  assert.ok(Buffer.concat(joined).equals(Buffer.from(payload)), 'the payload is unchanged');
}

for (const f of [4, 6] as const) {
  test(`IPv${f}: a 60 KB TCP GSO packet becomes segments within the receiver's MSS and the tunnel MTU`, () => {
    const { a, b, ipHeader, defaultMss } = families[f];
    const port = 40_000 + f;
    const data = randomBytes(60_000);
    const flags = ACK | PSH | FIN | CWR;
    const seq = 0xffff_0000; // wraps inside the packet
    const pkt = gsoPacket(f, data, seq, flags, port);
    // Its receiver's SYN-ACK not seen yet (a flow older than the data plane): RFC 9293's default MSS, less the options.
    check(f, pkt, segments(pkt, 1380), defaultMss + 20 - 32, seq, flags);
    // The receiver announced 1340 in its SYN-ACK as it went to the LAN through inject(): segments carry 1340 − 12
    // bytes, or what a smaller tunnel MTU leaves.
    addon.tcpMssLearn(buildPacket({ src: b, dst: a, protocol: 'tcp', srcPort: 5201, dstPort: port, tcpFlags: SYN | ACK, tcpOptions: mssOption(1340) }));
    const segs = segments(pkt, 1500);
    check(f, pkt, segs, 1340 + 20 - 32, seq, flags);
    for (const s of segments(pkt, 1280)) assert.ok(s.length <= 1280, 'within the MTU');
    check(f, pkt, segments(pkt, 1280), 1280 - ipHeader - 32, seq, flags);
  });
}

test('what cannot be cut is refused, and partial UDP and TCP checksums are completed', () => {
  const { a, b } = families[4];
  const udp = buildPacket({ src: a, dst: b, protocol: 'udp', srcPort: 1, dstPort: 2, payload: randomBytes(3000) });
  assert.equal(addon.gsoSegment(udp, 1380, new Uint8Array(10_000)), null, 'UDP GSO does not say where its datagrams end');
  const tcp = gsoPacket(4, randomBytes(5000), 1, ACK, 40_100);
  assert.equal(addon.gsoSegment(tcp, 1380, new Uint8Array(1000)), null, 'no room: refused, nothing half written');
  const info = new PacketInfo();
  for (const p of [udp, gsoPacket(6, randomBytes(777), 5, ACK | PSH, 40_200)]) {
    assert.ok(parsePacket(p, info).ok);
    put16(p, info.l4Offset + (info.protocol === 17 ? 6 : 16), 0xbeef);
    assert.equal(addon.completeChecksum(p), 0);
    assert.ok(verifyChecksums(p, info).l4, 'checksum completed');
  }
  assert.equal(addon.completeChecksum(buildPacket({ src: a, dst: b, protocol: 'icmp' })), -1, 'ICMP is not offloaded');
});
