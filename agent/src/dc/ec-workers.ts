// A first-time registration's EC work on worker threads (dc.ecWorkers > 0): the ECDH that gives K_ss and the recovery
// of the Node Transaction's signer (paper §2.2; docs/protocol.md §3.2) are ~40% of the DC's CPU per new terminal and
// need nothing of its state, so a DC with more cores than one runs them beside its event loop, which keeps the rest
// (the terminal table, the ledger's per-turn commit, every answer) in one thread as before. Each worker checks, in the
// DC's order: the ECDH, the request's MAC under K_ss, then the signature (a forged copy costs no recovery); the DC then
// handles the request again with the result (registration.ts), so every decision stays on the event loop.
// Requests of one turn go to a worker as one message (one postMessage per burst, not per request).
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Identity } from '../protocol/identity.js';
import * as NT from '../protocol/node-transaction.js';
import { checkRegistrationMac, decodeRegistrationRequest, registrationKey } from '../protocol/registration.js';

/** What a worker found: K_ss (null: not a key we can agree with) and the Node Transaction's check. */
export interface EcResult {
  readonly kss: Buffer | null;
  /** 'ok', or why the Node Transaction does not hold; 'unchecked' when the MAC failed first (no recovery done). */
  readonly nt: NT.NodeTransactionCheck | 'unchecked';
}

const WORKER_KIND = 'ntm-dc-ec';
const CHECKS: ReadonlyArray<NT.NodeTransactionCheck | 'unchecked'> = ['ok', 'malformed', 'signature', 'public-key', 'id', 'unchecked'];
/** A result: status (index in CHECKS; 255: no key) ‖ K_ss (32). */
const RESULT = 33;

/**
 * The parts in one Buffer with an ArrayBuffer of its own, to be transferred: Buffer.concat may cut a small result
 * from Node's shared pool, and transferring that would detach the pool under every other Buffer cut from it.
 */
function ownConcat(parts: readonly Buffer[]): Buffer {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = Buffer.allocUnsafeSlow(n);
  let at = 0;
  for (const p of parts) at += p.copy(out, at);
  return out;
}

interface WorkerInit {
  readonly kind: typeof WORKER_KIND;
  readonly privateKey: Uint8Array;
}

/** Worker side: requests packed as u16 length ‖ bytes, results as RESULT-byte records in the same order. */
function serve(init: WorkerInit): void {
  const identity = Identity.fromPrivateKey(init.privateKey);
  parentPort!.on('message', (batch: Uint8Array) => {
    const buf = Buffer.from(batch.buffer, batch.byteOffset, batch.byteLength);
    const out: Buffer[] = [];
    for (let at = 0; at < buf.length; ) {
      const len = buf.readUInt16BE(at);
      out.push(check(identity, buf.subarray(at + 2, at + 2 + len)));
      at += 2 + len;
    }
    const all = ownConcat(out);
    parentPort!.postMessage(all, [all.buffer as ArrayBuffer]);
  });
}

function check(identity: Identity, packet: Buffer): Buffer {
  const r = Buffer.alloc(RESULT);
  r[0] = 255;
  const d = decodeRegistrationRequest(packet);
  if (!d.ok) return r;
  const nt = NT.decode(d.value.nt);
  if (nt instanceof NT.NodeTransactionDecodeError) return r;
  const x = identity.dh(nt.publicKey);
  if (!x) return r;
  const kss = registrationKey(x);
  kss.copy(r, 1);
  r[0] = CHECKS.indexOf(checkRegistrationMac(d.value, kss) ? NT.check(nt) : 'unchecked');
  return r;
}

if (!isMainThread && (workerData as WorkerInit | undefined)?.kind === WORKER_KIND) serve(workerData as WorkerInit);

/** The DC's side: a few workers, requests of a turn batched, results handed back in order. */
export class EcWorkers {
  /** A worker that died (an exception in it, or killed) leaves an empty slot: the others carry on. */
  private readonly workers: Array<Worker | undefined> = [];
  /** Per worker: the callbacks of the batches it is working on, in order. */
  private readonly waiting: Array<Array<Array<(r: EcResult) => void>>> = [];
  private batch: Buffer[] = [];
  private batchDone: Array<(r: EcResult) => void> = [];
  private next = 0;
  private scheduled = false;
  /** Requests handed to the workers and not answered yet. */
  pending = 0;

  constructor(identity: Identity, count: number, onError: (e: unknown) => void) {
    const privateKey = identity.exportPrivateKey();
    for (let i = 0; i < count; i++) {
      const w = new Worker(new URL(import.meta.url), { workerData: { kind: WORKER_KIND, privateKey } satisfies WorkerInit });
      const queue: Array<Array<(r: EcResult) => void>> = [];
      w.on('message', (res: Uint8Array) => this.answered(queue, Buffer.from(res.buffer, res.byteOffset, res.byteLength)));
      w.on('error', onError);
      w.on('exit', () => this.died(i));
      // Not counted as keeping the process alive: the DC's sockets and timers do that.
      w.unref();
      this.workers.push(w);
      this.waiting.push(queue);
    }
    privateKey.fill(0);
  }

  /** Whether any worker is left (without one the DC does the EC work on its event loop again). */
  get alive(): boolean {
    return this.workers.some((w) => w !== undefined);
  }

  /** A dead worker's requests are dropped (their terminals retransmit; then on another worker or the event loop). */
  private died(i: number): void {
    if (!this.workers[i]) return;
    this.workers[i] = undefined;
    for (const dones of this.waiting[i]!.splice(0)) this.pending -= dones.length;
  }

  /** Checks a registration request (copied here: the caller's buffer may be a socket's reused one). */
  submit(packet: Uint8Array, done: (r: EcResult) => void): void {
    const b = Buffer.allocUnsafe(2 + packet.length);
    b.writeUInt16BE(packet.length, 0);
    b.set(packet, 2);
    this.batch.push(b);
    this.batchDone.push(done);
    this.pending++;
    if (!this.scheduled) {
      this.scheduled = true;
      // At the end of the current job: everything one burst of datagrams brought goes in one message.
      queueMicrotask(() => this.post());
    }
  }

  private post(): void {
    this.scheduled = false;
    if (this.batch.length === 0) return;
    const n = this.workers.length;
    let i = this.next;
    for (let k = 0; k < n && !this.workers[i]; k++) i = (i + 1) % n;
    const w = this.workers[i];
    const parts = this.batch;
    const dones = this.batchDone;
    this.batch = [];
    this.batchDone = [];
    if (!w) {
      this.pending -= dones.length;
      return;
    }
    this.next = (i + 1) % n;
    const all = ownConcat(parts);
    this.waiting[i]!.push(dones);
    w.postMessage(all, [all.buffer as ArrayBuffer]);
  }

  private answered(queue: Array<Array<(r: EcResult) => void>>, res: Buffer): void {
    const dones = queue.shift();
    if (!dones) return;
    for (let k = 0; k < dones.length; k++) {
      this.pending--;
      const r = res.subarray(k * RESULT, (k + 1) * RESULT);
      dones[k]!(r[0] === 255 ? { kss: null, nt: 'malformed' } : { kss: Buffer.from(r.subarray(1)), nt: CHECKS[r[0]!] ?? 'malformed' });
    }
  }

  async close(): Promise<void> {
    const ws = this.workers.splice(0);
    await Promise.all(ws.map((w) => w?.terminate()));
  }
}
