// A UDP RTT prober for netns tests: from one socket, probes each target in turn and prints one JSON report.
// Run inside a namespace: node dist/tests/lib/udp-probe.js --target ADDR:PORT [--target ...] [--count 20]
//   [--interval-ms 0] [--timeout-ms 1000] [--warmup 1]. IPv6 targets are written [ADDR]:PORT.
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { type EchoReply, median, type ProbeReport, type ProbeTargetResult } from './probe-format.js';

function parseTarget(t: string): { address: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(t) ?? /^([^:]+):(\d+)$/.exec(t);
  if (!m?.[1] || !m[2]) throw new Error(`bad target "${t}" (want ADDR:PORT or [V6ADDR]:PORT)`);
  return { address: m[1], port: Number(m[2]) };
}

function args(): { targets: string[]; count: number; intervalMs: number; timeoutMs: number; warmup: number } {
  const out = { targets: [] as string[], count: 20, intervalMs: 0, timeoutMs: 1000, warmup: 1 };
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    const v = a[i + 1] ?? '';
    switch (a[i]) {
      case '--target':
        out.targets.push(v);
        break;
      case '--count':
        out.count = Number(v);
        break;
      case '--interval-ms':
        out.intervalMs = Number(v);
        break;
      case '--timeout-ms':
        out.timeoutMs = Number(v);
        break;
      case '--warmup':
        out.warmup = Number(v);
        break;
      default:
        throw new Error(`unknown argument ${a[i]}`);
    }
    i++;
  }
  if (out.targets.length === 0) throw new Error('no --target');
  return out;
}

async function main(): Promise<void> {
  const opts = args();
  const targets = opts.targets.map(parseTarget);
  const six = isIPv6(targets[0]?.address ?? '');
  const sock = createSocket(six ? 'udp6' : 'udp4');
  await new Promise<void>((r) => sock.bind(0, r));
  // One probe outstanding at a time; a reply is matched by the sequence number it echoes.
  let waiting: { seq: number; done: (reply: EchoReply | null, at: bigint) => void } | null = null;
  sock.on('message', (msg) => {
    const at = process.hrtime.bigint();
    try {
      const reply = JSON.parse(msg.toString()) as EchoReply;
      const seq = (JSON.parse(Buffer.from(reply.payload, 'base64').toString()) as { seq: number }).seq;
      if (waiting && waiting.seq === seq) waiting.done(reply, at);
    } catch {
      // not one of ours
    }
  });
  let seq = 0;
  const once = (t: { address: string; port: number }): Promise<{ rttMs: number; reply: EchoReply } | null> =>
    new Promise((resolve) => {
      const mySeq = ++seq;
      const sent = process.hrtime.bigint();
      const timer = setTimeout(() => {
        waiting = null;
        resolve(null);
      }, opts.timeoutMs);
      waiting = {
        seq: mySeq,
        done: (reply, at) => {
          clearTimeout(timer);
          waiting = null;
          resolve(reply ? { rttMs: Number(at - sent) / 1e6, reply } : null);
        },
      };
      sock.send(JSON.stringify({ seq: mySeq }), t.port, t.address);
    });
  const results: ProbeTargetResult[] = [];
  for (const [i, t] of targets.entries()) {
    // Warm-up probes fill neighbour caches on every hop and are not counted.
    for (let w = 0; w < opts.warmup; w++) await once(t);
    const rtts: number[] = [];
    const observed = new Set<string>();
    let echoReceived = 0;
    for (let n = 0; n < opts.count; n++) {
      const r = await once(t);
      if (r) {
        rtts.push(Math.round(r.rttMs * 1000) / 1000);
        const o = r.reply.observed;
        echoReceived = Math.max(echoReceived, r.reply.received);
        observed.add(o.family === 'IPv6' ? `[${o.address}]:${o.port}` : `${o.address}:${o.port}`);
      }
      if (opts.intervalMs > 0) await new Promise((r2) => setTimeout(r2, opts.intervalMs));
    }
    results.push({
      target: opts.targets[i] ?? '',
      sent: opts.count,
      received: rtts.length,
      rttMs: rtts,
      medianMs: median(rtts),
      minMs: rtts.length ? Math.min(...rtts) : null,
      maxMs: rtts.length ? Math.max(...rtts) : null,
      observed: [...observed],
      echoReceived,
    });
  }
  const local = sock.address();
  const report: ProbeReport = { local: { address: local.address, port: local.port }, results };
  console.log(JSON.stringify(report));
  sock.close();
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
