// Micro-benchmarks of the crypto layer (secp256k1 native vs noble, Node Transaction checks, ChaCha20-Poly1305
// native vs noble, the native addon's own Keccak and AEAD, sealed frames, Noise KK handshakes, replay window). Prints
// one JSON document; not a pass/fail timer (STYLE habit 10). Run: node dist/tests/bench/crypto-bench.js [--ms 300]
// [--only substring]

import { randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import { nativeAddon, type NativeAddon } from '../../agent/src/native.js';
import { nativeAead, nobleAead, type Aead } from '../../agent/src/crypto/aead.js';
import { keccak256 } from '../../agent/src/crypto/hex.js';
import { consumeRequest, consumeResponse, createRequest, createResponse, type NoiseSuite } from '../../agent/src/crypto/noise.js';
import { ReplayWindow } from '../../agent/src/crypto/replay.js';
import { KeyPair, nobleSecp256k1, randomPrivateKey, requireNativeSecp256k1, type Secp256k1 } from '../../agent/src/crypto/secp256k1.js';
import { DATA_TYPE, TunnelKeypair } from '../../agent/src/crypto/session.js';
import { Identity } from '../../agent/src/protocol/identity.js';
import * as NT from '../../agent/src/protocol/node-transaction.js';

export interface BenchResult {
  name: string;
  opsPerSec: number;
  usPerOp: number;
  /** The process's CPU time (user + system) per operation: on a shared core, what the operation costs whatever else ran. */
  cpuUsPerOp: number;
  ops: number;
}

/** Runs `fn` for about `ms` milliseconds (after a short warm-up) and reports its rate. */
export function measure(name: string, ms: number, fn: (i: number) => unknown): BenchResult {
  for (let i = 0; i < 200; i++) fn(i);
  let ops = 0;
  const cpu0 = process.cpuUsage();
  const start = process.hrtime.bigint();
  const budget = BigInt(ms) * 1_000_000n;
  let elapsed = 0n;
  while (elapsed < budget) {
    for (let i = 0; i < 64; i++) fn(ops + i);
    ops += 64;
    elapsed = process.hrtime.bigint() - start;
  }
  const secs = Number(elapsed) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  return { name, opsPerSec: Math.round(ops / secs), usPerOp: Number(((secs * 1e6) / ops).toFixed(2)), cpuUsPerOp: Number(((cpu.user + cpu.system) / ops).toFixed(2)), ops };
}

/** A benchmark's body, closed over its inputs. */
export interface BenchCase {
  readonly name: string;
  readonly fn: (i: number) => unknown;
}

/**
 * The native addon's own crypto entry points (agent/native: keccak.c, aead.c), called directly so that no TypeScript
 * wrapper is in the figure; addon-ab.ts runs the same cases on two builds of the addon.
 */
export function addonCryptoCases(addon: NativeAddon): BenchCase[] {
  const body104 = randomBytes(104);
  const digest = Buffer.alloc(32);
  const cases: BenchCase[] = [{ name: 'ntmdp.keccak256.104B', fn: () => addon.keccak256(body104, digest) }];
  const ctx = new addon.ChaChaPoly();
  for (const size of [64, 1400]) {
    const key = randomBytes(32);
    const pt = randomBytes(size);
    const out = Buffer.alloc(size + 16);
    ctx.seal(key, 1, pt, out);
    const sealed = Buffer.from(out);
    const ptOut = Buffer.alloc(size);
    cases.push({ name: `ntmdp.chachapoly.seal.${size}B`, fn: (i) => ctx.seal(key, i, pt, out) });
    cases.push({ name: `ntmdp.chachapoly.open.${size}B`, fn: () => ctx.open(key, 1, sealed, ptOut) });
  }
  return cases;
}

export function runCryptoBench(opts: { ms?: number; only?: string } = {}): { environment: Record<string, string | number>; results: BenchResult[] } {
  const ms = opts.ms ?? 300;
  const results: BenchResult[] = [];
  const run = (name: string, fn: (i: number) => unknown, budget = ms): void => {
    if (opts.only === undefined || name.includes(opts.only)) results.push(measure(name, budget, fn));
  };
  const native = requireNativeSecp256k1();

  for (const impl of [native, nobleSecp256k1] as Secp256k1[]) {
    const slow = impl.name === 'noble' ? Math.max(100, ms / 2) : ms;
    const k = randomPrivateKey();
    const k2 = randomPrivateKey();
    const pub = impl.publicKeyCreate(k);
    const pub2 = impl.publicKeyCreate(k2);
    const digests = Array.from({ length: 64 }, () => randomBytes(32));
    const sigs = digests.map((d) => impl.sign(d, k));
    const out = Buffer.alloc(65);
    run(`secp256k1.${impl.name}.sign`, (i) => impl.sign(digests[i & 63]!, k, out), slow);
    run(`secp256k1.${impl.name}.verify`, (i) => impl.verify(sigs[i & 63]!, digests[i & 63]!, pub), slow);
    run(`secp256k1.${impl.name}.recover`, (i) => impl.recover(sigs[i & 63]!, digests[i & 63]!, false, out), slow);
    run(`secp256k1.${impl.name}.ecdh`, () => impl.ecdh(pub2, k, out.subarray(0, 32)), slow);
    run(`secp256k1.${impl.name}.publicKeyCreate`, () => impl.publicKeyCreate(k, true, out.subarray(0, 33)), slow);
  }

  const body104 = randomBytes(104);
  const kOut = Buffer.alloc(32);
  run('keccak256.104B', () => keccak256(body104, kOut));

  {
    const dcId = randomBytes(20);
    const encodings = Array.from({ length: 64 }, () => NT.encode(NT.sign(Identity.generate(), { dcId, revoked: false, timestamp: Date.now() })));
    const decoded = encodings.map((e) => NT.decode(e) as NT.NodeTransaction);
    run('nodeTransaction.decode', (i) => NT.decode(encodings[i & 63]!));
    run('nodeTransaction.check.native', (i) => NT.check(decoded[i & 63]!, native));
    run('nodeTransaction.decodeAndCheck.native (DC registration cost)', (i) => {
      const d = NT.decode(encodings[i & 63]!);
      return d instanceof NT.NodeTransactionDecodeError ? d : NT.check(d, native);
    });
    run('nodeTransaction.check.noble', (i) => NT.check(decoded[i & 63]!, nobleSecp256k1), Math.max(100, ms / 2));
  }

  const addon = nativeAddon();
  if (addon) for (const c of addonCryptoCases(addon)) run(c.name, c.fn);

  for (const aead of [nativeAead, nobleAead] as Aead[]) {
    for (const size of [64, 1400]) {
      const key = randomBytes(32);
      const pt = randomBytes(size);
      const out = Buffer.alloc(size + 16);
      const sealed = aead.seal(key, 1, pt);
      const ptOut = Buffer.alloc(size);
      run(`aead.${aead.name}.seal.${size}B`, (i) => aead.seal(key, i, pt, undefined, out));
      run(`aead.${aead.name}.open.${size}B`, () => aead.open(key, 1, sealed, undefined, ptOut));
    }
  }

  {
    const k1 = randomBytes(32);
    const k2 = randomBytes(32);
    const far = { now: 0 };
    const a = new TunnelKeypair({ packetType: DATA_TYPE, sendKey: k1, receiveKey: k2, localIndex: 1, remoteIndex: 2, isInitiator: true, clock: () => far.now, limits: { rejectAfterMs: Number.MAX_SAFE_INTEGER } });
    const b = new TunnelKeypair({ packetType: DATA_TYPE, sendKey: k2, receiveKey: k1, localIndex: 2, remoteIndex: 1, isInitiator: false, clock: () => far.now, limits: { rejectAfterMs: Number.MAX_SAFE_INTEGER } });
    const pt = randomBytes(1400);
    const out = Buffer.alloc(1500);
    const ptOut = Buffer.alloc(1500);
    run('session.seal.1400B (native, out buffer)', () => a.seal(pt, out, 0));
    // Pre-seal a batch so open measures authentic, in-order packets; when it runs out, a fresh receiver (new replay
    // window, same keys) replays the same batch, so the loop measures open alone.
    const batch = Array.from({ length: 8192 }, () => Buffer.from(a.seal(pt, undefined, 0) as Buffer));
    const receiver = (): TunnelKeypair =>
      new TunnelKeypair({ packetType: DATA_TYPE, sendKey: k2, receiveKey: k1, localIndex: 2, remoteIndex: 1, isInitiator: false, clock: () => far.now, limits: { rejectAfterMs: Number.MAX_SAFE_INTEGER } });
    let rx = b;
    let n = 0;
    run('session.open.1400B (native, out buffer)', () => {
      if (n >= batch.length) {
        rx = receiver();
        n = 0;
      }
      return rx.open(batch[n++]!, ptOut, 0);
    });
  }

  for (const suite of [{ secp: native, aead: nativeAead }] as NoiseSuite[]) {
    const si = KeyPair.generate(suite.secp);
    const sr = KeyPair.generate(suite.secp);
    const tunnelId = randomBytes(8);
    run('noise.kk.fullHandshake (both sides, native)', () => {
      const req = createRequest({ localStatic: si, remoteStatic: sr.publicKey, tunnelId, senderIndex: 1, suite });
      const hs = consumeRequest(req.packet, { localStatic: sr, remoteStatic: si.publicKey, suite });
      if (typeof hs === 'string') throw new Error(hs);
      const res = createResponse(hs, { senderIndex: 2 });
      return consumeResponse(req.state, res.packet);
    });
    const req = createRequest({ localStatic: si, remoteStatic: sr.publicKey, tunnelId, senderIndex: 1, suite });
    run('noise.kk.consumeRequest (responder cost per TUNNEL_REQUEST)', () => consumeRequest(req.packet, { localStatic: sr, remoteStatic: si.publicKey, suite }));
  }

  {
    const w = new ReplayWindow();
    run('replay.checkAndUpdate (in order)', (i) => w.check(i) && w.update(i));
  }

  const cpu = cpus()[0];
  return {
    environment: { node: process.version, cpu: cpu?.model ?? 'unknown', cores: cpus().length, msPerBenchmark: ms },
    results,
  };
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (import.meta.filename === process.argv[1]) {
  const msArg = arg('--ms');
  const report = runCryptoBench({ ms: msArg === undefined ? undefined : Number(msArg), only: arg('--only') });
  console.log(JSON.stringify(report, null, 2));
}
