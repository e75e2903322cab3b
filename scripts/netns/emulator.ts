// The link emulator (our netem stand-in): one process per core router, holding each NFQUEUE'd packet for its pair's
// one-way delay before the ACCEPT verdict. Run inside the router's namespace: node emulator.js CONFIG.json
// Stats go to the config's statsFile every second (when changed), on SIGUSR1 and at exit.
import { createRequire } from 'node:module';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { DelayLine, Scheduler } from './delay-line.js';
import type { DirectedPair, EmulatorConfig } from './plan.js';

interface NfqPacket {
  readonly info: { readonly id: number; readonly len: number };
  setVerdict(verdict: number, mark?: number, buffer?: Buffer): void;
}

interface NfqModule {
  readonly NF_ACCEPT: number;
  readonly NF_DROP: number;
  createQueueHandler(queue: number, bufferBytes: number, onPacket: (p: NfqPacket) => void): unknown;
}

export interface PairStats {
  pair: string;
  queue: number;
  delayMs: number;
  holdMs: number;
  jitterMs: number;
  loss: number;
  packets: number;
  bytes: number;
  released: number;
  lost: number;
  held: number;
  maxHeld: number;
  /** How late packets left against their due time: the emulator's own error. */
  lateUs: { mean: number; max: number; over1ms: number };
}

export interface EmulatorStats {
  router: string;
  pid: number;
  startedAt: string;
  updatedAt: string;
  pairs: PairStats[];
}

interface PairState {
  readonly cfg: DirectedPair;
  readonly line: DelayLine<NfqPacket>;
  packets: number;
  bytes: number;
  released: number;
  lost: number;
  maxHeld: number;
  lateSumNs: bigint;
  lateMaxNs: bigint;
  over1ms: number;
}

function main(): void {
  const configFile = process.argv[2];
  if (!configFile) {
    console.error('usage: node emulator.js CONFIG.json');
    process.exit(2);
  }
  const cfg = JSON.parse(readFileSync(configFile, 'utf8')) as EmulatorConfig;
  const nfq = createRequire(import.meta.url)('nfqueue') as NfqModule;
  const startedAt = new Date().toISOString();
  let dirty = true;

  const pairs: PairState[] = [];
  for (const p of cfg.pairs) {
    if (p.queue < 0) continue;
    const state: PairState = {
      cfg: p,
      line: new DelayLine<NfqPacket>(BigInt(p.holdUs) * 1000n, BigInt(p.jitterUs) * 1000n, p.reorder, (pkt, lateNs) => {
        pkt.setVerdict(nfq.NF_ACCEPT);
        state.released++;
        state.lateSumNs += lateNs;
        if (lateNs > state.lateMaxNs) state.lateMaxNs = lateNs;
        if (lateNs > 1_000_000n) state.over1ms++;
      }),
      packets: 0,
      bytes: 0,
      released: 0,
      lost: 0,
      maxHeld: 0,
      lateSumNs: 0n,
      lateMaxNs: 0n,
      over1ms: 0,
    };
    pairs.push(state);
  }
  const scheduler = new Scheduler(pairs.map((p) => p.line));

  for (const p of pairs) {
    // The socket buffer only has to absorb bursts between reads; held packets wait in the kernel's queue (1024 max).
    nfq.createQueueHandler(p.cfg.queue, 4 << 20, (pkt) => {
      // A packet gets a verdict, never an exception: this callback runs inside the addon's poll handler.
      const now = process.hrtime.bigint();
      p.packets++;
      p.bytes += pkt.info.len;
      dirty = true;
      if (p.cfg.loss > 0 && Math.random() < p.cfg.loss) {
        p.lost++;
        pkt.setVerdict(nfq.NF_DROP);
        return;
      }
      const due = p.line.push(pkt, now);
      if (p.line.length > p.maxHeld) p.maxHeld = p.line.length;
      scheduler.kick(due);
    });
  }

  const snapshot = (): EmulatorStats => ({
    router: cfg.router,
    pid: process.pid,
    startedAt,
    updatedAt: new Date().toISOString(),
    pairs: pairs.map((p) => ({
      pair: p.cfg.name,
      queue: p.cfg.queue,
      delayMs: p.cfg.delayUs / 1000,
      holdMs: p.cfg.holdUs / 1000,
      jitterMs: p.cfg.jitterUs / 1000,
      loss: p.cfg.loss,
      packets: p.packets,
      bytes: p.bytes,
      released: p.released,
      lost: p.lost,
      held: p.line.length,
      maxHeld: p.maxHeld,
      lateUs: {
        mean: p.released > 0 ? Math.round(Number(p.lateSumNs / BigInt(p.released)) / 100) / 10 : 0,
        max: Math.round(Number(p.lateMaxNs) / 100) / 10,
        over1ms: p.over1ms,
      },
    })),
  });
  const writeStats = (): void => {
    const tmp = `${cfg.statsFile}.tmp`;
    writeFileSync(tmp, JSON.stringify(snapshot(), null, 2) + '\n');
    renameSync(tmp, cfg.statsFile);
    dirty = false;
  };

  process.on('SIGUSR1', writeStats);
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.on(sig, () => {
      writeStats();
      process.exit(0);
    });
  }
  setInterval(() => {
    if (dirty) writeStats();
  }, 1000);

  writeStats();
  writeFileSync(cfg.readyFile, `${process.pid}\n`);
  console.log(`emulator ${cfg.router}: pid ${process.pid}, ${pairs.length} queued directions`);
  for (const p of pairs) console.log(`  queue ${p.cfg.queue}: ${p.cfg.name} (${p.cfg.inIf} -> ${p.cfg.outIf}) ${p.cfg.delayUs / 1000} ms (held ${p.cfg.holdUs / 1000} ms)`);
}

main();
