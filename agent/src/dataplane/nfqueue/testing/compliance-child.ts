// Test support: runs the compliance suite against the real NFQUEUE source. Started by
// tests/netns/nfqueue-compliance.test.ts inside a namespace where `complianceRules(queue)` are installed:
// `node compliance-child.js <queue> [nfqueue|batch]` (the node-nfqueue source, or the native batched one).
// Prints one JSON line per case, then exits (the node-nfqueue binding cannot close).
import dgram from 'node:dgram';
import { openNfqueueSource } from '../source.js';
import { openBatchSource } from '../batch-source.js';
import type { ComplianceHarness, Lane } from './compliance.js';
import { LANES, LANE_PORT, complianceCases, runCase } from './compliance.js';

const RECV_BUFFER = 8 * 1024 * 1024;
const SENDERS = 16;

async function bind(type: 'udp4' | 'udp6', address: string, port: number, onMessage?: (m: Buffer) => void): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type, recvBufferSize: RECV_BUFFER });
  if (onMessage) s.on('message', onMessage);
  // A queue-full drop fails the sender's sendmsg (ENOSPC/EPERM): expected in one case, never fatal.
  s.on('error', () => {});
  await new Promise<void>((resolve) => s.bind(port, address, resolve));
  return s;
}

async function main(): Promise<void> {
  const queue = Number(process.argv[2]);
  const source = process.argv[3] === 'batch' ? openBatchSource({ queue, queueMaxlen: 1024 }) : openNfqueueSource({ queue });
  const got: Record<Lane, Uint8Array[]> = { plain: [], marked: [], plain6: [] };
  for (const lane of LANES)
    await bind(lane === 'plain6' ? 'udp6' : 'udp4', lane === 'plain6' ? '::1' : '127.0.0.1', LANE_PORT[lane], (m) => got[lane].push(new Uint8Array(m)));
  // A queued packet stays charged to its sender's send buffer until its verdict, so one socket could hold only
  // ~256 small datagrams in the queue at once: spread the sends over several sockets.
  const send4: dgram.Socket[] = [];
  for (let i = 0; i < SENDERS; i++) send4.push(await bind('udp4', '127.0.0.1', 0));
  const send6 = await bind('udp6', '::1', 0);
  let next = 0;
  const h: ComplianceHarness = {
    source,
    queueMaxLength: 1024,
    send(lane, payload) {
      const six = lane === 'plain6';
      const sock = six ? send6 : send4[next++ % SENDERS]!;
      sock.send(payload, LANE_PORT[lane], six ? '::1' : '127.0.0.1', () => {});
    },
    take: (lane) => got[lane].splice(0),
    async waitFor(lane, count, ms) {
      const end = Date.now() + ms;
      while (got[lane].length < count && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
      return got[lane].length;
    },
  };
  for (const c of complianceCases) {
    const t0 = Date.now();
    try {
      await runCase(c, h);
      console.log(JSON.stringify({ name: c.name, ok: true, ms: Date.now() - t0 }));
    } catch (e) {
      console.log(JSON.stringify({ name: c.name, ok: false, ms: Date.now() - t0, error: (e as Error).stack ?? String(e) }));
    }
  }
  console.log(JSON.stringify({ done: true, counters: source.counters }));
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
