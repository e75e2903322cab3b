// Benchmark of the packet layer's per-packet work (parse, address rewrite, MSS clamp, checksums). Prints JSON; not
// a pass/fail timer. `gcs` counts garbage collections during the timed loop: 0 means the path did not allocate.
//   node dist/tests/bench/packet-bench.js [iterations]
import { PerformanceObserver, performance } from 'node:perf_hooks';
import {
  PacketInfo,
  parsePacket,
  rewriteAddress,
  clampTcpMss,
  internetChecksum,
  addressEquals,
  TCP_SYN,
  TCP_ACK,
} from '../../agent/src/dataplane/packet/index.js';
import { buildPacket } from '../../agent/src/dataplane/packet/testing/build.js';
import { ipToBytes } from '../../agent/src/protocol/ip.js';

const N = Number(process.argv[2] ?? 1_000_000);
const RUNS = 5;

let gcs = 0;
new PerformanceObserver((list) => (gcs += list.getEntries().length)).observe({ entryTypes: ['gc'] });

interface Result {
  readonly name: string;
  readonly bytes: number;
  readonly nsPerPacket: number;
  readonly packetsPerSecond: number;
  readonly gcs: number;
}

/** Median ns per call of `op(i)` over RUNS runs of N calls, after a warm-up. */
function measure(name: string, bytes: number, op: (i: number) => void): Result {
  for (let i = 0; i < 200_000; i++) op(i);
  const times: number[] = [];
  const gcBefore = gcs;
  for (let r = 0; r < RUNS; r++) {
    const t0 = performance.now();
    for (let i = 0; i < N; i++) op(i);
    times.push(((performance.now() - t0) * 1e6) / N);
  }
  times.sort((x, y) => x - y);
  const ns = times[Math.floor(RUNS / 2)]!;
  return { name, bytes, nsPerPacket: Math.round(ns * 10) / 10, packetsPerSecond: Math.round(1e9 / ns), gcs: gcs - gcBefore };
}

const A4 = ipToBytes('192.168.1.20');
const V4 = ipToBytes('198.18.0.10');
const R4 = ipToBytes('203.0.113.7');
const A6 = ipToBytes('fd99::20');
const V6 = ipToBytes('fd12:3456:789a::10');
const R6 = ipToBytes('2001:db8::7');

const payload = new Uint8Array(1352).map((_, i) => i & 0xff);
const udp4 = buildPacket({ src: A4, dst: R4, protocol: 'udp', srcPort: 5000, dstPort: 6000, payload });
const tcp4 = buildPacket({ src: A4, dst: R4, protocol: 'tcp', tcpFlags: TCP_ACK, srcPort: 5000, dstPort: 443, payload: payload.subarray(0, 1340) });
const tcp6 = buildPacket({ src: A6, dst: R6, protocol: 'tcp', tcpFlags: TCP_ACK, srcPort: 5000, dstPort: 443, payload: payload.subarray(0, 1320) });
const syn4 = buildPacket({ src: A4, dst: R4, protocol: 'tcp', tcpFlags: TCP_SYN, tcpOptions: Uint8Array.from([2, 4, 0x05, 0xb4, 4, 2, 1, 1]) });
const icmpErr4 = buildPacket({ src: R4, dst: A4, protocol: 'icmp', icmpType: 3, icmpCode: 3, payload: udp4.subarray(0, 548) });
const info = new PacketInfo();

/** Parse, then rewrite the source to `a` or `b` alternately, so every iteration changes the packet. */
function parseRewrite(pkt: Uint8Array, field: 'src' | 'dst', a: Uint8Array, b: Uint8Array) {
  return (i: number): void => {
    const r = parsePacket(pkt, info);
    if (!r.ok) throw new Error(r.reason);
    rewriteAddress(pkt, info, field, (i & 1) === 0 ? a : b);
  };
}

const results: Result[] = [
  measure('parse IPv4/UDP 1380 B', udp4.length, () => {
    parsePacket(udp4, info);
  }),
  measure('parse IPv6/TCP 1380 B', tcp6.length, () => {
    parsePacket(tcp6, info);
  }),
  measure('parse + match + rewrite src IPv4/UDP 1380 B (LAN → tunnel NAT)', udp4.length, (i) => {
    parsePacket(udp4, info);
    addressEquals(udp4, info, 'src', (i & 1) === 0 ? A4 : V4);
    rewriteAddress(udp4, info, 'src', (i & 1) === 0 ? V4 : A4);
  }),
  measure('parse + rewrite dst IPv4/TCP 1380 B', tcp4.length, parseRewrite(tcp4, 'dst', V4, R4)),
  measure('parse + rewrite dst IPv6/TCP 1380 B', tcp6.length, parseRewrite(tcp6, 'dst', V6, R6)),
  measure('parse + rewrite src ICMP error quoting UDP (576 B)', icmpErr4.length, parseRewrite(icmpErr4, 'src', V4, R4)),
  measure('parse + MSS clamp SYN (alternating 1460/1300)', syn4.length, (i) => {
    parsePacket(syn4, info);
    if ((i & 1) === 0) clampTcpMss(syn4, info, 1300);
    else {
      syn4[info.l4Offset + 22] = 0x05;
      syn4[info.l4Offset + 23] = 0xb4;
    }
  }),
  measure('full RFC 1071 checksum over 1380 B (for comparison)', udp4.length, () => {
    internetChecksum(udp4, 0, udp4.length);
  }),
];

console.log(JSON.stringify({ bench: 'packet', node: process.version, iterations: N, runs: RUNS, results }, null, 2));
