// Packet parsing (RFC 791, RFC 8200, transport headers): captured packets, hand-built fragments and extension
// headers, and malformed input that must yield a reason, never an exception.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PacketInfo,
  parsePacket,
  isIcmpError,
  verifyChecksums,
  addressEquals,
  TCP_SYN,
  TCP_ACK,
  TCP_RST,
  MAX_EXTENSION_HEADERS,
} from '../../agent/src/dataplane/packet/index.js';
import type { ParseResult, PacketFailureReason } from '../../agent/src/dataplane/packet/index.js';
import { buildPacket, fragment4, fragment6, hex } from '../../agent/src/dataplane/packet/testing/build.js';
import { CAPTURED, randomBytes, rng } from '../../agent/src/dataplane/packet/testing/fixtures.js';
import { ipToBytes } from '../../agent/src/protocol/ip.js';

function ok(r: ParseResult): PacketInfo {
  if (!r.ok) assert.fail(`expected a parse, got ${r.reason}`);
  return r;
}

function reason(buf: Uint8Array, embedded = false): PacketFailureReason | 'ok' {
  const r = parsePacket(buf, new PacketInfo(), 0, buf.length, embedded);
  return r.ok ? 'ok' : r.reason;
}

void test('captured TCP SYN with options: header lengths, ports, flags, checksums', () => {
  const p = CAPTURED.syn4;
  const i = ok(parsePacket(p, new PacketInfo()));
  assert.equal(i.version, 4);
  assert.equal(i.totalLength, 60);
  assert.equal(i.headerLength, 20);
  assert.equal(i.protocol, 6);
  assert.equal(i.hopLimit, 64);
  assert.equal(i.dontFragment, true);
  assert.equal(i.isFragment, false);
  assert.equal(i.l4Offset, 20);
  assert.equal(i.l4HeaderLength, 40);
  assert.equal(i.payloadOffset, 60);
  assert.equal(i.srcPort, 45138);
  assert.equal(i.dstPort, 80);
  assert.equal(i.tcpFlags, TCP_SYN);
  assert.ok(addressEquals(p, i, 'src', ipToBytes('10.9.0.1')));
  assert.ok(addressEquals(p, i, 'dst', ipToBytes('10.9.0.2')));
  assert.ok(!addressEquals(p, i, 'dst', ipToBytes('10.9.0.1')));
  assert.deepEqual(verifyChecksums(p, i), { ip: true, l4: true });
});

void test('captured RST with link padding: trailing bytes are not part of the packet', () => {
  const p = CAPTURED.rst4Padded;
  const i = ok(parsePacket(p, new PacketInfo()));
  assert.equal(i.totalLength, 40);
  assert.equal(i.end, 40);
  assert.equal(i.tcpFlags, TCP_RST | TCP_ACK);
  assert.equal(i.payloadOffset, 40);
  assert.deepEqual(verifyChecksums(p, i), { ip: true, l4: true });
});

void test('captured UDP over IPv4 and IPv6', () => {
  const i4 = ok(parsePacket(CAPTURED.udp4, new PacketInfo()));
  assert.equal(i4.protocol, 17);
  assert.equal(i4.srcPort, 60395);
  assert.equal(i4.dstPort, 5353);
  assert.equal(i4.payloadOffset, 28);
  assert.equal(new TextDecoder().decode(CAPTURED.udp4.subarray(i4.payloadOffset, i4.end)), 'hello');
  assert.deepEqual(verifyChecksums(CAPTURED.udp4, i4), { ip: true, l4: true });

  const i6 = ok(parsePacket(CAPTURED.udp6, new PacketInfo()));
  assert.equal(i6.version, 6);
  assert.equal(i6.headerLength, 40);
  assert.equal(i6.totalLength, 51);
  assert.equal(i6.srcPort, 60779);
  assert.equal(i6.dstPort, 7);
  assert.equal(i6.hopLimit, 64);
  assert.ok(addressEquals(CAPTURED.udp6, i6, 'dst', ipToBytes('fd09::2')));
  assert.deepEqual(verifyChecksums(CAPTURED.udp6, i6), { ip: true, l4: true });
});

void test('captured ICMP echo: type, code, identifier', () => {
  const i = ok(parsePacket(CAPTURED.echo4, new PacketInfo()));
  assert.equal(i.protocol, 1);
  assert.equal(i.icmpType, 8);
  assert.equal(i.icmpCode, 0);
  assert.equal(i.icmpId, 6077);
  assert.equal(i.srcPort, 0);
  assert.equal(isIcmpError(i), false);
  assert.deepEqual(verifyChecksums(CAPTURED.echo4, i), { ip: true, l4: true });
});

void test('captured ICMP errors and the packets they quote (embedded parsing)', () => {
  const i = ok(parsePacket(CAPTURED.unreach4, new PacketInfo()));
  assert.equal(i.icmpType, 3);
  assert.equal(i.icmpCode, 3);
  assert.ok(isIcmpError(i));
  assert.deepEqual(verifyChecksums(CAPTURED.unreach4, i), { ip: true, l4: true });
  const e = ok(parsePacket(CAPTURED.unreach4, new PacketInfo(), i.payloadOffset, i.end, true));
  assert.equal(e.start, 28);
  assert.equal(e.srcPort, 60395);
  assert.equal(e.dstPort, 5353);

  const j = ok(parsePacket(CAPTURED.unreach6, new PacketInfo()));
  assert.equal(j.protocol, 58);
  assert.equal(j.icmpType, 1);
  assert.equal(j.icmpCode, 4);
  assert.ok(isIcmpError(j));
  assert.deepEqual(verifyChecksums(CAPTURED.unreach6, j), { ip: true, l4: true });
  const f = ok(parsePacket(CAPTURED.unreach6, new PacketInfo(), j.payloadOffset, j.end, true));
  assert.equal(f.version, 6);
  assert.equal(f.dstPort, 7);
});

void test('captured MLDv2 report: Hop-by-Hop extension header is walked to ICMPv6', () => {
  const p = CAPTURED.mldHbh;
  const i = ok(parsePacket(p, new PacketInfo()));
  assert.equal(i.version, 6);
  assert.equal(i.headerLength, 48);
  assert.equal(i.protocol, 58);
  assert.equal(i.l4Offset, 48);
  assert.equal(i.icmpType, 143);
  assert.equal(i.hopLimit, 1);
  assert.deepEqual(verifyChecksums(p, i), { ip: true, l4: true });
});

void test('IPv6 with Hop-by-Hop, Destination Options and Routing headers before UDP', () => {
  const pad6 = new Uint8Array(6);
  pad6[0] = 1; // PadN
  pad6[1] = 4;
  const routing = new Uint8Array(22); // type 0-like, segments left 0, one address
  const p = buildPacket({
    src: ipToBytes('fd00::1'),
    dst: ipToBytes('fd00::2'),
    protocol: 'udp',
    srcPort: 1000,
    dstPort: 2000,
    payload: new TextEncoder().encode('x'),
    extensions: [
      { type: 0, body: pad6 },
      { type: 60, body: pad6 },
      { type: 43, body: routing },
    ],
  });
  const i = ok(parsePacket(p, new PacketInfo()));
  assert.equal(i.headerLength, 40 + 8 + 8 + 24);
  assert.equal(i.protocol, 17);
  assert.equal(i.dstPort, 2000);
  assert.equal(i.routingSegmentsLeft, 0);
  assert.deepEqual(verifyChecksums(p, i), { ip: true, l4: true });
});

void test('IPv4 with options: IHL beyond 5 is skipped to the transport header', () => {
  const p = buildPacket({
    src: ipToBytes('192.0.2.1'),
    dst: ipToBytes('192.0.2.2'),
    protocol: 'udp',
    srcPort: 7,
    dstPort: 9,
    ipOptions: hex('94040000'), // router alert
  });
  const i = ok(parsePacket(p, new PacketInfo()));
  assert.equal(i.headerLength, 24);
  assert.equal(i.l4Offset, 24);
  assert.equal(i.dstPort, 9);
  assert.deepEqual(verifyChecksums(p, i), { ip: true, l4: true });
});

void test('IPv4 fragments (hand-built bytes): first carries ports, later ones no transport header', () => {
  // 10.0.0.1 > 10.0.0.2 UDP 1234 > 53, id 0xabcd: first fragment MF, 8 bytes; second offset 8, last.
  const first = hex('45000024abcd200040110000 0a000001 0a000002 04d2 0035 0018 0000 41414141 42424242');
  const second = hex('4500001cabcd000140110000 0a000001 0a000002 43434343 44444444');
  const a = ok(parsePacket(first, new PacketInfo()));
  assert.equal(a.isFragment, true);
  assert.equal(a.moreFragments, true);
  assert.equal(a.fragmentOffset, 0);
  assert.equal(a.fragmentId, 0xabcd);
  assert.equal(a.l4Offset, 20);
  assert.equal(a.dstPort, 53);
  const b = ok(parsePacket(second, new PacketInfo()));
  assert.equal(b.isFragment, true);
  assert.equal(b.moreFragments, false);
  assert.equal(b.fragmentOffset, 8);
  assert.equal(b.l4Offset, -1);
  assert.equal(b.payloadOffset, -1);
  assert.equal(b.dstPort, 0);
  assert.equal(b.protocol, 17);
});

void test('IPv6 fragments (hand-built bytes): Fragment header fields, non-first has no transport header', () => {
  const hdr = (payloadLen: string): string => `60000000${payloadLen}2c40 fd000000000000000000000000000001 fd000000000000000000000000000002`;
  // First: next header UDP, offset 0, M=1, id 0x01020304; UDP 5 > 6 length 24 then 8 data bytes.
  const first = hex(`${hdr('0018')} 1100 0001 01020304 0005 0006 0018 0000 4141414141414141`);
  // Second: offset 16, M=0.
  const second = hex(`${hdr('0010')} 1100 0010 01020304 4242424242424242`);
  const a = ok(parsePacket(first, new PacketInfo()));
  assert.equal(a.isFragment, true);
  assert.equal(a.fragmentHeaderOffset, 40);
  assert.equal(a.fragmentId, 0x01020304);
  assert.equal(a.moreFragments, true);
  assert.equal(a.protocol, 17);
  assert.equal(a.l4Offset, 48);
  assert.equal(a.dstPort, 6);
  const b = ok(parsePacket(second, new PacketInfo()));
  assert.equal(b.fragmentOffset, 16);
  assert.equal(b.moreFragments, false);
  assert.equal(b.l4Offset, -1);
  assert.equal(b.protocol, 17);
  assert.equal(b.headerLength, 48);
});

void test('fragmenting helpers produce what the parser expects', () => {
  const big = buildPacket({
    src: ipToBytes('10.0.0.1'),
    dst: ipToBytes('10.0.0.2'),
    protocol: 'udp',
    srcPort: 1,
    dstPort: 2,
    payload: new Uint8Array(100),
    dontFragment: false,
  });
  const frags = fragment4(big, 40);
  assert.equal(frags.length, 3);
  const infos = frags.map((f) => ok(parsePacket(f, new PacketInfo())));
  assert.deepEqual(
    infos.map((i) => [i.fragmentOffset, i.moreFragments, i.l4Offset >= 0]),
    [
      [0, true, true],
      [40, true, false],
      [80, false, false],
    ],
  );
  const big6 = buildPacket({ src: ipToBytes('fd00::1'), dst: ipToBytes('fd00::2'), protocol: 'udp', payload: new Uint8Array(100) });
  const f6 = fragment6(big6, 48, 7).map((f) => ok(parsePacket(f, new PacketInfo())));
  assert.deepEqual(
    f6.map((i) => [i.fragmentOffset, i.moreFragments, i.fragmentId]),
    [
      [0, true, 7],
      [48, true, 7],
      [96, false, 7],
    ],
  );
});

void test('one PacketInfo is reused: a second parse leaves nothing of the first', () => {
  const info = new PacketInfo();
  ok(parsePacket(CAPTURED.syn4, info));
  ok(parsePacket(CAPTURED.echo4, info));
  assert.equal(info.tcpFlags, 0);
  assert.equal(info.srcPort, 0);
  assert.equal(info.icmpId, 6077);
  ok(parsePacket(hex('4500001cabcd000140110000 0a000001 0a000002 43434343 44444444'), info));
  assert.equal(info.icmpType, -1);
  assert.equal(info.l4Offset, -1);
});

void test('malformed and truncated input returns a reason', () => {
  const syn = CAPTURED.syn4;
  const cases: [string, Uint8Array, PacketFailureReason][] = [
    ['empty', new Uint8Array(0), 'empty'],
    ['IPv4 shorter than its fixed header', syn.subarray(0, 19), 'truncated'],
    ['unknown version', hex('55000014000000004006000001020304 05060708'), 'bad-version'],
    ['IHL below 5', Uint8Array.from([0x44, ...syn.subarray(1)]), 'bad-header-length'],
    ['total length below IHL', Uint8Array.from([...syn.subarray(0, 2), 0, 10, ...syn.subarray(4)]), 'bad-total-length'],
    ['total length beyond the buffer', syn.subarray(0, 59), 'truncated'],
    ['IPv6 shorter than its fixed header', CAPTURED.udp6.subarray(0, 39), 'truncated'],
    ['IPv6 payload length beyond the buffer', CAPTURED.udp6.subarray(0, 50), 'truncated'],
    ['TCP data offset below 5', Uint8Array.from([...syn.subarray(0, 32), 0x40, ...syn.subarray(33)]), 'bad-tcp-header'],
    ['TCP data offset beyond the packet', Uint8Array.from([...syn.subarray(0, 32), 0xf0, ...syn.subarray(33)]), 'bad-tcp-header'],
    ['UDP length below 8', Uint8Array.from([...CAPTURED.udp4.subarray(0, 24), 0, 4, ...CAPTURED.udp4.subarray(26)]), 'bad-udp-length'],
    ['UDP length beyond the packet', Uint8Array.from([...CAPTURED.udp4.subarray(0, 24), 0, 40, ...CAPTURED.udp4.subarray(26)]), 'bad-udp-length'],
  ];
  // A TCP packet whose IP total length leaves only 10 bytes of TCP header.
  const shortTcp = syn.slice(0, 30);
  shortTcp[3] = 30;
  cases.push(['TCP header cut short', shortTcp, 'truncated-l4']);
  // Jumbogram: payload length 0 with a Hop-by-Hop header (RFC 2675) is not supported.
  const jumbo = CAPTURED.mldHbh.slice();
  jumbo[4] = 0;
  jumbo[5] = 0;
  cases.push(['IPv6 jumbogram', jumbo, 'jumbogram']);
  for (const [name, buf, want] of cases) assert.equal(reason(buf), want, name);
});

void test('IPv6 extension header chains: misplaced Hop-by-Hop, too many, running past the end', () => {
  const chain = (n: number): Uint8Array =>
    buildPacket({
      src: ipToBytes('fd00::1'),
      dst: ipToBytes('fd00::2'),
      protocol: 59, // No Next Header
      extensions: Array.from({ length: n }, () => ({ type: 60, body: new Uint8Array(6) })),
    });
  assert.equal(reason(chain(MAX_EXTENSION_HEADERS)), 'ok');
  assert.equal(reason(chain(MAX_EXTENSION_HEADERS + 1)), 'too-many-extension-headers');
  const hbhSecond = buildPacket({
    src: ipToBytes('fd00::1'),
    dst: ipToBytes('fd00::2'),
    protocol: 'udp',
    extensions: [
      { type: 60, body: new Uint8Array(6) },
      { type: 0, body: new Uint8Array(6) },
    ],
  });
  assert.equal(reason(hbhSecond), 'bad-extension-header');
  const long = CAPTURED.mldHbh.slice();
  long[41] = 20; // Hop-by-Hop claims 168 bytes
  assert.equal(reason(long), 'truncated');
});

void test('fuzz: every truncation and random mutation of real packets parses or fails with a reason', () => {
  const rand = rng(0x5eed);
  const info = new PacketInfo();
  let parsed = 0;
  let failed = 0;
  for (const p of Object.values(CAPTURED)) {
    for (let n = 0; n <= p.length; n++) {
      for (const embedded of [false, true]) {
        const r = parsePacket(p.subarray(0, n), info, 0, n, embedded);
        if (r.ok) {
          assert.ok(r.end <= n && r.l4Offset <= r.end);
          parsed++;
        } else failed++;
      }
    }
    for (let k = 0; k < 2000; k++) {
      const m = p.slice();
      for (let j = 0; j < 3; j++) m[Math.floor(rand() * m.length)] = Math.floor(rand() * 256);
      const r = parsePacket(m, info);
      if (r.ok) assert.ok(r.end <= m.length && (r.payloadOffset < 0 || r.payloadOffset <= r.end));
    }
  }
  for (let k = 0; k < 5000; k++) {
    const m = randomBytes(rand, Math.floor(rand() * 80));
    if (m.length > 0) m[0] = (rand() < 0.5 ? 0x45 : 0x60) | (m[0]! & 0x0f);
    parsePacket(m, info);
  }
  assert.ok(parsed > 0 && failed > 0);
});
