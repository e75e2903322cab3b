// Two builds of the native addon (agent/native) side by side in one process: the crypto micro-benchmark's addon cases
// (crypto-bench.ts: Keccak-256, ChaCha20-Poly1305 seal and open) and the UDP socket's two send paths, each run on the
// old build and the new one in short alternating slices, so that the drift of a shared machine falls on both alike.
// Prints JSON: per case the median ops/s of each build over the slices and the median of the per-slice ratios new/old
// (above 1: the new build is faster). Not a pass/fail timer (STYLE habit 10).
//
//   node dist/tests/bench/addon-ab.js --old OLD.node [--new NEW.node] [--slices 40] [--ms 25]
//
// OLD.node: the base commit's agent/native built elsewhere (tests/bench/README.md, "Two builds of the native addon").
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { NativeAddon, NativeUdpSocket } from '../../agent/src/native.js';
import { ROOT } from '../lib/ntm.js';
import { addonCryptoCases, type BenchCase, measure } from './crypto-bench.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The UDP socket's send paths (udp.c) to a socket of the same build on loopback that never reads (the kernel drops). */
function udpCases(addon: NativeAddon, sockets: NativeUdpSocket[]): BenchCase[] {
  const sink = new addon.UdpSocket('127.0.0.1', 0, 1 << 16, 1 << 16);
  const tx = new addon.UdpSocket('127.0.0.1', 0, 1 << 16, 4 << 20);
  sockets.push(sink, tx);
  const datagram = Buffer.alloc(1400, 0x5a);
  return [
    { name: 'ntmdp.udp.send.1400B', fn: () => tx.send(datagram, '127.0.0.1', sink.port) },
    {
      name: 'ntmdp.udp.queue+flush.32x1400B (per datagram)',
      fn: (i) => {
        tx.queue(datagram, '127.0.0.1', sink.port);
        if ((i & 31) === 31) tx.flush();
      },
    },
  ];
}

function main(): number {
  const oldPath = arg('--old');
  const newPath = arg('--new') ?? join(ROOT, 'agent', 'native', 'build', 'Release', 'ntmdp.node');
  const slices = Number(arg('--slices') ?? 40);
  const ms = Number(arg('--ms') ?? 25);
  if (oldPath === undefined || !existsSync(oldPath) || !existsSync(newPath) || !(slices >= 2) || !(ms >= 5)) {
    process.stderr.write('usage: addon-ab --old OLD.node [--new NEW.node] [--slices N≥2] [--ms MS≥5]\n');
    return 2;
  }
  const load = createRequire(import.meta.url);
  const builds = [load(oldPath) as NativeAddon, load(newPath) as NativeAddon];
  const sockets: NativeUdpSocket[] = [];
  const cases = builds.map((b) => [...addonCryptoCases(b), ...udpCases(b, sockets)]);
  const results: Record<string, { old_ops_per_s: number; new_ops_per_s: number; ratio_new_over_old: number; ratio_p25: number; ratio_p75: number }> = {};
  for (let c = 0; c < cases[0]!.length; c++) {
    const name = cases[0]![c]!.name;
    const ops: [number[], number[]] = [[], []];
    const ratios: number[] = [];
    for (let s = 0; s < slices; s++) {
      // Which build goes first alternates, so neither always gets the warmer (or quieter) half of a slice pair.
      const order = s % 2 === 0 ? [0, 1] : [1, 0];
      for (const b of order) ops[b as 0 | 1].push(measure(name, ms, cases[b]![c]!.fn).opsPerSec);
      ratios.push(ops[1][s]! / ops[0][s]!);
    }
    const sorted = [...ratios].sort((a, b) => a - b);
    results[name] = {
      old_ops_per_s: Math.round(median(ops[0])),
      new_ops_per_s: Math.round(median(ops[1])),
      ratio_new_over_old: Number(median(ratios).toFixed(3)),
      ratio_p25: Number(sorted[Math.floor(sorted.length / 4)]!.toFixed(3)),
      ratio_p75: Number(sorted[Math.floor((sorted.length * 3) / 4)]!.toFixed(3)),
    };
  }
  for (const s of sockets) s.close();
  const report = { old_addon: oldPath, new_addon: newPath, slices, ms_per_slice: ms, statistic: 'medians over alternating slices', results };
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  return 0;
}

if (import.meta.filename === process.argv[1]) process.exit(main());
