// Checksums (RFC 1071/1624), address rewrite with ICMP error translation, MSS clamping and Packet Too Big messages,
// checked against an independent from-scratch recomputation over random and captured packets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PacketInfo,
  parsePacket,
  rewriteAddress,
  computeL4Checksum,
  internetChecksum,
  adjustChecksum,
  wordDelta,
  onesSum,
  clampTcpMss,
  readTcpMss,
  buildPacketTooBig,
  buildDestinationUnreachable,
  verifyChecksums,
  addressOffset,
  TCP_SYN,
  TCP_ACK,
} from '../../agent/src/dataplane/packet/index.js';
import type { ParseResult } from '../../agent/src/dataplane/packet/index.js';
import { buildPacket, fragment4, fragment6 } from '../../agent/src/dataplane/packet/testing/build.js';
import { CAPTURED, field16, randomBytes, refIpChecksum, refL4Checksum, rng } from '../../agent/src/dataplane/packet/testing/fixtures.js';
import { ipToBytes } from '../../agent/src/protocol/ip.js';

function ok(r: ParseResult): PacketInfo {
  if (!r.ok) assert.fail(`expected a parse, got ${r.reason}`);
  return r;
}

/** Both one's complement zeros verify for TCP/ICMP; UDP never carries 0 as a computed value. */
function sameChecksum(actual: number, expected: number, proto: number): boolean {
  if (actual === expected) return true;
  return proto !== 17 && ((actual === 0 && expected === 0xffff) || (actual === 0xffff && expected === 0));
}

function csumOffset(proto: number): number {
  return proto === 6 ? 16 : proto === 17 ? 6 : 2;
}

/** Asserts every checksum of a whole packet against the independent reference. */
function assertChecksums(pkt: Uint8Array, info: PacketInfo, what: string): void {
  if (info.version === 4) assert.equal(field16(pkt, 10), refIpChecksum(pkt, info.headerLength), `${what}: IPv4 header checksum`);
  const proto = info.protocol;
  if (info.l4Offset < 0 || ![1, 6, 17, 58].includes(proto)) return;
  const actual = field16(pkt, info.l4Offset + csumOffset(proto));
  if (proto === 17 && info.version === 4 && actual === 0) return;
  const expected = refL4Checksum(pkt.subarray(0, info.end), info.version, info.l4Offset, proto);
  assert.ok(sameChecksum(actual, expected, proto), `${what}: transport checksum 0x${actual.toString(16)} != 0x${expected.toString(16)}`);
}

interface Random {
  readonly pkt: Uint8Array;
  readonly v6: boolean;
}

function randomPacket(rand: () => number): Random {
  const v6 = rand() < 0.5;
  const protos = ['tcp', 'udp', 'icmp'] as const;
  const protocol = protos[Math.floor(rand() * 3)]!;
  const addr = (): Uint8Array => randomBytes(rand, v6 ? 16 : 4);
  const optWords = Math.floor(rand() * 4);
  return {
    v6,
    pkt: buildPacket({
      src: addr(),
      dst: addr(),
      protocol,
      srcPort: Math.floor(rand() * 65536),
      dstPort: Math.floor(rand() * 65536),
      payload: randomBytes(rand, Math.floor(rand() * 400)),
      tcpFlags: Math.floor(rand() * 256),
      tcpOptions: protocol === 'tcp' ? randomBytes(rand, Math.floor(rand() * 40)) : undefined,
      icmpType: protocol === 'icmp' ? (v6 ? 128 : 8) : undefined,
      icmpRest: Math.floor(rand() * 0x100000000),
      ipOptions: !v6 && optWords > 0 ? randomBytes(rand, optWords * 4) : undefined,
      extensions: v6 && optWords > 1 ? [{ type: 60, body: randomBytes(rand, 6) }] : undefined,
      ttl: Math.floor(rand() * 256),
      id: Math.floor(rand() * 65536),
    }),
  };
}

void test('RFC 1071 checksum: the RFC §3 example and odd lengths', () => {
  // RFC 1071 §3: words 0x0001 0xf203 0xf4f5 0xf6f7 sum to 0xddf2 (after end-around carry).
  const b = Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
  assert.equal(onesSum(b, 0, 8), 0xddf2);
  assert.equal(internetChecksum(b, 0, 8), ~0xddf2 & 0xffff);
  // An odd trailing byte counts as its high half.
  assert.equal(onesSum(Uint8Array.from([0x12, 0x34, 0x56]), 0, 3), 0x1234 + 0x5600);
});

void test('RFC 1624 incremental update equals recomputation, including the -0 case of §3', () => {
  const rand = rng(1624);
  for (let k = 0; k < 20000; k++) {
    const b = randomBytes(rand, 2 * (1 + Math.floor(rand() * 20)));
    const c = internetChecksum(b, 0, b.length);
    const w = 2 * Math.floor(rand() * (b.length / 2));
    const old = field16(b, w);
    const now = Math.floor(rand() * 65536);
    b[w] = now >> 8;
    b[w + 1] = now & 0xff;
    const expected = internetChecksum(b, 0, b.length);
    const got = adjustChecksum(c, wordDelta(old, now));
    assert.ok(sameChecksum(got, expected, 6), `0x${got.toString(16)} vs 0x${expected.toString(16)}`);
  }
  // RFC 1624 §3: a header whose checksum is 0xdd2f, changing word 0x5555 to 0x3285, gives 0x0000 (not 0xffff).
  assert.equal(adjustChecksum(0xdd2f, wordDelta(0x5555, 0x3285)), 0x0000);
});

void test('full transport checksums of random packets match the independent reference', () => {
  const rand = rng(7);
  for (let k = 0; k < 3000; k++) {
    const { pkt } = randomPacket(rand);
    const info = ok(parsePacket(pkt, new PacketInfo()));
    assertChecksums(pkt, info, `packet ${k}`);
    const c = computeL4Checksum(pkt, info);
    assert.ok(sameChecksum(c, refL4Checksum(pkt, info.version, info.l4Offset, info.protocol), info.protocol));
    assert.deepEqual(verifyChecksums(pkt, info), { ip: true, l4: true });
  }
});

void test('address rewrite of random packets: checksums match recomputation, rewriting back restores the bytes', () => {
  const rand = rng(42);
  const info = new PacketInfo();
  for (let k = 0; k < 3000; k++) {
    const { pkt, v6 } = randomPacket(rand);
    const original = pkt.slice();
    ok(parsePacket(pkt, info));
    const field = rand() < 0.5 ? 'src' : 'dst';
    const off = addressOffset(info, field);
    const before = pkt.slice(off, off + (v6 ? 16 : 4));
    const addr = randomBytes(rand, v6 ? 16 : 4);
    assert.ok(rewriteAddress(pkt, info, field, addr).ok);
    assert.deepEqual(pkt.subarray(off, off + addr.length), addr);
    assertChecksums(pkt, info, `packet ${k} after rewrite`);
    assert.ok(rewriteAddress(pkt, info, field, before).ok);
    assertChecksums(pkt, info, `packet ${k} rewritten back`);
    // Only a checksum may differ, and only between the two zeros.
    for (let i = 0; i < pkt.length; i++) {
      if (pkt[i] === original[i]) continue;
      const word = i & ~1;
      assert.ok(sameChecksum(field16(pkt, word), field16(original, word), info.protocol), `byte ${i} of packet ${k} changed`);
    }
  }
});

void test('rewrite rejects an address of the other family and a destination before a Routing header hop', () => {
  const info = ok(parsePacket(CAPTURED.udp4.slice(), new PacketInfo()));
  const r = rewriteAddress(CAPTURED.udp4.slice(), info, 'src', ipToBytes('fd00::1'));
  assert.deepEqual(r, { ok: false, reason: 'address-length' });
  const routed = buildPacket({
    src: ipToBytes('fd00::1'),
    dst: ipToBytes('fd00::2'),
    protocol: 'udp',
    extensions: [{ type: 43, body: Uint8Array.from([0, 1, 0, 0, 0, 0]) }], // segments left 1
  });
  const ri = ok(parsePacket(routed, new PacketInfo()));
  assert.equal(ri.routingSegmentsLeft, 1);
  assert.deepEqual(rewriteAddress(routed, ri, 'dst', ipToBytes('fd00::3')), { ok: false, reason: 'routing-header' });
  assert.ok(rewriteAddress(routed, ri, 'src', ipToBytes('fd00::3')).ok);
});

void test('IPv4 UDP without checksum keeps 0; a computed 0 is sent as 0xffff', () => {
  const pkt = buildPacket({ src: ipToBytes('10.0.0.1'), dst: ipToBytes('10.0.0.2'), protocol: 'udp', payload: new Uint8Array(9), udpZeroChecksum: true });
  const info = ok(parsePacket(pkt, new PacketInfo()));
  assert.ok(rewriteAddress(pkt, info, 'dst', ipToBytes('198.18.0.10')).ok);
  assert.equal(field16(pkt, 26), 0);
  assert.equal(field16(pkt, 10), refIpChecksum(pkt, 20));

  // Choose a new source address word that makes the data sum to 0xffff, so the UDP checksum comes out as 0.
  const udp = buildPacket({ src: ipToBytes('10.0.0.1'), dst: ipToBytes('10.0.0.2'), protocol: 'udp', srcPort: 5, dstPort: 6, payload: Uint8Array.from([1, 2, 3]) });
  const ui = ok(parsePacket(udp, new PacketInfo()));
  const c = field16(udp, 26);
  let w = field16(udp, 12) + c;
  w = (w & 0xffff) + (w >>> 16);
  const addr = Uint8Array.from([w >> 8, w & 0xff, udp[14]!, udp[15]!]);
  assert.ok(rewriteAddress(udp, ui, 'src', addr).ok);
  assert.equal(field16(udp, 26), 0xffff);
  assert.deepEqual(verifyChecksums(udp, ui), { ip: true, l4: true });
});

void test('fragments: each is fixed at the IP level, the first also at L4, and the reassembled datagram verifies', () => {
  const rand = rng(99);
  for (const v6 of [false, true]) {
    for (const protocol of ['udp', 'tcp'] as const) {
      const whole = buildPacket({
        src: ipToBytes(v6 ? 'fd00::1' : '10.0.0.1'),
        dst: ipToBytes(v6 ? 'fd00::2' : '10.0.0.2'),
        protocol,
        srcPort: 1111,
        dstPort: 2222,
        payload: randomBytes(rand, 301),
        dontFragment: false,
      });
      const frags = v6 ? fragment6(whole, 104, 5) : fragment4(whole, 104);
      const newDst = ipToBytes(v6 ? 'fd12:3456:789a::10' : '198.18.0.10');
      const chunks: Uint8Array[] = [];
      for (const f of frags) {
        const info = ok(parsePacket(f, new PacketInfo()));
        assert.ok(rewriteAddress(f, info, 'dst', newDst).ok);
        if (!v6) assert.equal(field16(f, 10), refIpChecksum(f, 20));
        chunks.push(f.subarray(info.start + info.headerLength, info.end));
      }
      // Reassemble by hand: the first fragment's header (made whole) and every fragment's data.
      const hl = v6 ? 40 : 20;
      const data = chunks.reduce((n, c) => n + c.length, 0);
      const re = new Uint8Array(hl + data);
      re.set(frags[0]!.subarray(0, hl));
      let o = hl;
      for (const c of chunks) {
        re.set(c, o);
        o += c.length;
      }
      if (v6) {
        re[4] = data >> 8;
        re[5] = data & 0xff;
        re[6] = protocol === 'udp' ? 17 : 6;
      } else {
        re[2] = re.length >> 8;
        re[3] = re.length & 0xff;
        re[6] = 0;
        re[7] = 0;
      }
      const ri = ok(parsePacket(re, new PacketInfo()));
      assert.deepEqual(re.subarray(addressOffset(ri, 'dst'), addressOffset(ri, 'dst') + newDst.length), newDst);
      const at = ri.l4Offset + (protocol === 'udp' ? 6 : 16);
      assert.ok(sameChecksum(field16(re, at), refL4Checksum(re, v6 ? 6 : 4, ri.l4Offset, ri.protocol), ri.protocol), `${protocol} v${v6 ? 6 : 4}`);
    }
  }
});

function icmpError(v6: boolean, inner: Uint8Array, from: string, to: string): Uint8Array {
  return buildPacket({
    src: ipToBytes(from),
    dst: ipToBytes(to),
    protocol: 'icmp',
    icmpType: v6 ? 1 : 3,
    icmpCode: v6 ? 4 : 3,
    payload: inner,
  });
}

void test('ICMP errors: the quoted packet is translated with its checksums, the ICMP checksum follows', () => {
  for (const v6 of [false, true]) {
    const A = v6 ? 'fd77:1::2' : '10.77.1.2';
    const B = v6 ? 'fd77:2::2' : '10.77.2.2';
    const V = v6 ? 'fd12:3456:789a::10' : '198.18.0.10';
    for (const protocol of ['udp', 'tcp', 'icmp'] as const) {
      // B got A's packet (A > B) and answers with an error; the gateway makes it come from V, about A > V.
      const inner = buildPacket({ src: ipToBytes(A), dst: ipToBytes(B), protocol, srcPort: 40000, dstPort: 9, payload: new Uint8Array(33).fill(7) });
      const err = icmpError(v6, inner, B, A);
      const info = ok(parsePacket(err, new PacketInfo()));
      assert.ok(rewriteAddress(err, info, 'src', ipToBytes(V)).ok);
      assertChecksums(err, info, `${protocol} v${v6 ? 6 : 4} error`);
      const e = ok(parsePacket(err, new PacketInfo(), info.payloadOffset, info.end, true));
      assert.deepEqual(err.subarray(addressOffset(e, 'dst'), addressOffset(e, 'dst') + (v6 ? 16 : 4)), ipToBytes(V));
      assert.deepEqual(err.subarray(addressOffset(e, 'src'), addressOffset(e, 'src') + (v6 ? 16 : 4)), ipToBytes(A));
      const quoted = err.slice(info.payloadOffset, info.end);
      assertChecksums(quoted, ok(parsePacket(quoted, new PacketInfo())), `quoted ${protocol} v${v6 ? 6 : 4}`);
      // And the other direction: rewriting the destination translates the quoted source.
      assert.ok(rewriteAddress(err, info, 'dst', ipToBytes(v6 ? 'fd99::5' : '192.168.1.5')).ok);
      assertChecksums(err, info, `${protocol} v${v6 ? 6 : 4} error, dst rewrite`);
      const quoted2 = err.slice(info.payloadOffset, info.end);
      assertChecksums(quoted2, ok(parsePacket(quoted2, new PacketInfo())), `quoted ${protocol} after dst rewrite`);
    }
  }
});

void test('ICMP errors quoting only 8 transport bytes: TCP checksum out of reach, the rest still right', () => {
  const inner = buildPacket({ src: ipToBytes('10.77.1.2'), dst: ipToBytes('10.77.2.2'), protocol: 'tcp', srcPort: 40000, dstPort: 80 });
  const err = icmpError(false, inner.subarray(0, 28), '10.77.2.2', '10.77.1.2');
  const info = ok(parsePacket(err, new PacketInfo()));
  assert.ok(rewriteAddress(err, info, 'src', ipToBytes('198.18.0.10')).ok);
  assertChecksums(err, info, 'short quote');
  assert.equal(field16(err, 28 + 10), refIpChecksum(err.subarray(28), 20));
});

void test('ICMP errors from a third party are left alone inside', () => {
  // A router R reports about A > B: rewriting R's address must not touch the quoted B.
  const inner = buildPacket({ src: ipToBytes('10.77.1.2'), dst: ipToBytes('10.77.2.2'), protocol: 'udp', srcPort: 1, dstPort: 2 });
  const err = icmpError(false, inner, '10.77.9.9', '10.77.1.2');
  const quoted = err.slice(28);
  const info = ok(parsePacket(err, new PacketInfo()));
  assert.ok(rewriteAddress(err, info, 'src', ipToBytes('198.18.0.10')).ok);
  assert.deepEqual(err.subarray(28), quoted);
  assertChecksums(err, info, 'third party');
});

void test('captured ICMP port unreachable (IPv4 and IPv6) translated to a virtual source', () => {
  const e4 = CAPTURED.unreach4.slice();
  const i4 = ok(parsePacket(e4, new PacketInfo()));
  assert.ok(rewriteAddress(e4, i4, 'src', ipToBytes('198.18.0.10')).ok);
  assertChecksums(e4, i4, 'captured v4');
  assert.deepEqual(e4.subarray(28 + 16, 28 + 20), ipToBytes('198.18.0.10'));
  assert.equal(field16(e4, 28 + 10), refIpChecksum(e4.subarray(28), 20));
  const e6 = CAPTURED.unreach6.slice();
  const i6 = ok(parsePacket(e6, new PacketInfo()));
  assert.ok(rewriteAddress(e6, i6, 'src', ipToBytes('fd12:3456:789a::10')).ok);
  assertChecksums(e6, i6, 'captured v6');
  assert.deepEqual(e6.subarray(48 + 24, 48 + 40), ipToBytes('fd12:3456:789a::10'));
});

void test('MSS clamp on the captured SYN: lowered with a valid checksum, never raised', () => {
  const syn = CAPTURED.syn4.slice();
  const info = ok(parsePacket(syn, new PacketInfo()));
  assert.equal(readTcpMss(syn, info), 1460);
  assert.equal(clampTcpMss(syn, info, 1500), false);
  assert.equal(clampTcpMss(syn, info, 1460), false);
  assert.equal(clampTcpMss(syn, info, 1340), true);
  assert.equal(readTcpMss(syn, info), 1340);
  assertChecksums(syn, info, 'clamped SYN');
  const rst = CAPTURED.rst4Padded.slice();
  assert.equal(clampTcpMss(rst, ok(parsePacket(rst, new PacketInfo())), 500), false);
});

void test('MSS clamp at an odd option offset, on SYN-ACK and IPv6, and on malformed options', () => {
  for (const v6 of [false, true]) {
    for (const flags of [TCP_SYN, TCP_SYN | TCP_ACK]) {
      // NOP, MSS 8960 at TCP offset 21 (odd), then NOP NOP NOP: 8 option bytes.
      const pkt = buildPacket({
        src: ipToBytes(v6 ? 'fd00::1' : '10.0.0.1'),
        dst: ipToBytes(v6 ? 'fd00::2' : '10.0.0.2'),
        protocol: 'tcp',
        tcpFlags: flags,
        tcpOptions: Uint8Array.from([1, 2, 4, 0x23, 0x00, 1, 1, 1]),
        payload: Uint8Array.from([9, 9, 9]),
      });
      const info = ok(parsePacket(pkt, new PacketInfo()));
      assert.equal(readTcpMss(pkt, info), 8960);
      assert.equal(clampTcpMss(pkt, info, 1220), true);
      assert.equal(readTcpMss(pkt, info), 1220);
      assertChecksums(pkt, info, `odd MSS v${v6 ? 6 : 4} flags ${flags}`);
    }
  }
  // Option length 0 (malformed): untouched.
  const bad = buildPacket({ src: ipToBytes('10.0.0.1'), dst: ipToBytes('10.0.0.2'), protocol: 'tcp', tcpFlags: TCP_SYN, tcpOptions: Uint8Array.from([8, 0, 2, 4, 5, 0xb4]) });
  const copy = bad.slice();
  assert.equal(clampTcpMss(bad, ok(parsePacket(bad, new PacketInfo())), 1000), false);
  assert.deepEqual(bad, copy);
  // Not a SYN: untouched even with an MSS option.
  const ack = buildPacket({ src: ipToBytes('10.0.0.1'), dst: ipToBytes('10.0.0.2'), protocol: 'tcp', tcpFlags: TCP_ACK, tcpOptions: Uint8Array.from([2, 4, 5, 0xb4]) });
  assert.equal(clampTcpMss(ack, ok(parsePacket(ack, new PacketInfo())), 1000), false);
});

void test('ICMP fragmentation needed for an oversized DF IPv4 packet', () => {
  const big = buildPacket({ src: ipToBytes('192.168.1.20'), dst: ipToBytes('198.18.0.10'), protocol: 'udp', srcPort: 5000, dstPort: 6000, payload: new Uint8Array(1400) });
  const info = ok(parsePacket(big, new PacketInfo()));
  const out = new Uint8Array(1500);
  const r = buildPacketTooBig(big, info, 1380, ipToBytes('192.168.1.1'), out);
  if (!r.ok) assert.fail(r.reason);
  assert.equal(r.length, 576);
  const msg = out.subarray(0, r.length);
  const mi = ok(parsePacket(msg, new PacketInfo()));
  assert.equal(mi.protocol, 1);
  assert.equal(mi.icmpType, 3);
  assert.equal(mi.icmpCode, 4);
  assert.equal(field16(msg, 26), 1380);
  assert.deepEqual(msg.subarray(16, 20), ipToBytes('192.168.1.20'));
  assert.deepEqual(msg.subarray(28), big.subarray(0, 548));
  assertChecksums(msg, mi, 'frag needed');

  const reasons = (pkt: Uint8Array, mtu: number): string => {
    const r2 = buildPacketTooBig(pkt, ok(parsePacket(pkt, new PacketInfo())), mtu, ipToBytes('192.168.1.1'), out);
    return r2.ok ? 'ok' : r2.reason;
  };
  assert.equal(reasons(big, 1500), 'not-too-big');
  const noDf = buildPacket({ src: ipToBytes('192.168.1.20'), dst: ipToBytes('198.18.0.10'), protocol: 'udp', payload: new Uint8Array(1400), dontFragment: false });
  assert.equal(reasons(noDf, 1380), 'not-df');
  const err = icmpError(false, big.subarray(0, 1400), '192.168.1.30', '192.168.1.20');
  err[6] = 0x40; // DF
  assert.equal(reasons(err, 1380), 'icmp-error');
  const mcast = buildPacket({ src: ipToBytes('224.0.0.5'), dst: ipToBytes('198.18.0.10'), protocol: 'udp', payload: new Uint8Array(1400) });
  assert.equal(reasons(mcast, 1380), 'bad-address');
  const small = buildPacketTooBig(big, info, 1380, ipToBytes('192.168.1.1'), new Uint8Array(100));
  assert.deepEqual(small, { ok: false, reason: 'output-too-small' });
});

void test('ICMPv6 Packet Too Big for an oversized IPv6 packet', () => {
  const big = buildPacket({ src: ipToBytes('fd99::20'), dst: ipToBytes('fd12:3456:789a::10'), protocol: 'tcp', tcpFlags: TCP_ACK, payload: new Uint8Array(1400) });
  const info = ok(parsePacket(big, new PacketInfo()));
  const out = new Uint8Array(1280);
  const r = buildPacketTooBig(big, info, 1400, ipToBytes('fd99::1'), out);
  if (!r.ok) assert.fail(r.reason);
  assert.equal(r.length, 1280);
  const mi = ok(parsePacket(out, new PacketInfo()));
  assert.equal(mi.protocol, 58);
  assert.equal(mi.icmpType, 2);
  assert.equal(mi.icmpCode, 0);
  assert.equal((field16(out, 44) << 16) | field16(out, 46), 1400);
  assert.deepEqual(out.subarray(24, 40), ipToBytes('fd99::20'));
  assert.deepEqual(out.subarray(48), big.subarray(0, 1232));
  assertChecksums(out, mi, 'packet too big');
  // An MTU below the IPv6 minimum is advertised as 1280.
  const r2 = buildPacketTooBig(big, info, 1000, ipToBytes('fd99::1'), out);
  assert.ok(r2.ok);
  assert.equal(field16(out, 46), 1280);
});

void test('destination unreachable in either family: host unreachable (IPv4), address unreachable (ICMPv6)', () => {
  // A TCP SYN from a phone's virtual address to an appliance's virtual address in the family the appliance lacks.
  const syn6 = buildPacket({ src: ipToBytes('fd4e:544d:c65d::7'), dst: ipToBytes('fd4e:544d:c65d::10'), protocol: 'tcp', tcpFlags: 0x02, srcPort: 40000, dstPort: 80 });
  const out = new Uint8Array(1280);
  const r6 = buildDestinationUnreachable(syn6, ok(parsePacket(syn6, new PacketInfo())), ipToBytes('fd4e:544d:c65d::10'), out);
  if (!r6.ok) assert.fail(r6.reason);
  const m6 = out.subarray(0, r6.length);
  const i6 = ok(parsePacket(m6, new PacketInfo()));
  assert.equal(i6.protocol, 58);
  assert.equal(i6.icmpType, 1);
  assert.equal(i6.icmpCode, 3);
  assert.deepEqual(m6.subarray(8, 24), ipToBytes('fd4e:544d:c65d::10'), 'from the unreachable address');
  assert.deepEqual(m6.subarray(24, 40), ipToBytes('fd4e:544d:c65d::7'), 'to the sender');
  assert.equal((field16(m6, 44) << 16) | field16(m6, 46), 0, 'unused word is zero');
  assert.deepEqual(m6.subarray(48), syn6, 'the whole SYN quoted');
  assertChecksums(m6, i6, 'address unreachable');

  const syn4 = buildPacket({ src: ipToBytes('198.18.0.7'), dst: ipToBytes('198.18.0.10'), protocol: 'tcp', tcpFlags: 0x02, srcPort: 40000, dstPort: 80 });
  const r4 = buildDestinationUnreachable(syn4, ok(parsePacket(syn4, new PacketInfo())), ipToBytes('198.18.0.10'), out);
  if (!r4.ok) assert.fail(r4.reason);
  const m4 = out.subarray(0, r4.length);
  const i4 = ok(parsePacket(m4, new PacketInfo()));
  assert.equal(i4.icmpType, 3);
  assert.equal(i4.icmpCode, 1);
  assert.deepEqual(m4.subarray(16, 20), ipToBytes('198.18.0.7'));
  assert.deepEqual(m4.subarray(28), syn4);
  assertChecksums(m4, i4, 'host unreachable');

  // Never about an ICMP error, and never from the wrong family's address.
  const err = icmpError(false, syn4, '198.18.0.10', '198.18.0.7');
  const e = buildDestinationUnreachable(err, ok(parsePacket(err, new PacketInfo())), ipToBytes('198.18.0.10'), out);
  assert.deepEqual(e, { ok: false, reason: 'icmp-error' });
  const w = buildDestinationUnreachable(syn6, ok(parsePacket(syn6, new PacketInfo())), ipToBytes('198.18.0.10'), out);
  assert.deepEqual(w, { ok: false, reason: 'address-length' });
});
