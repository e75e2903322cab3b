// The DC capacity benchmark's load generator (a process of its own, pinned to the core the DC does not use). It plays
// N terminals: their identities, signed Node Transactions and registration keys K_ss are generated before the load
// (on worker threads, before pinning); the requests themselves (a MAC and a fresh timestamp) are built in chunks just
// ahead of sending, so during the load the generator mostly sends prepared datagrams and counts answers. Closed loop: `window` requests in
// flight; a request unanswered after 2 s is counted lost and replaced by the next one. Bounded by count and time.
//
//   node dist/tests/bench/dc-load.js --dc-public-key HEX --dc-id 0xHEX --port P [--host 127.0.0.1] [--count 100000]
//        [--reregister 50000] [--seconds 300] [--pause 1] [--window 256] [--cpu 0] [--threads 2] [--answered FILE]
//        [--sockets 1]
//
// --sockets K: terminal i sends from socket i mod K (K source ports), as terminals on many addresses would: a DC of
// several workers sharing its port (dc.workers, SO_REUSEPORT) gets each 4-tuple at one worker, so one socket would
// reach one worker only.
// --answered FILE: every answer of phase "first" is decrypted and checked, and the IDs the DC registered (status OK)
// are written to FILE as a JSON array: what a test then looks for on the ledger (tests/netns/ntm-evm.test.ts).
// Prints JSON lines: {"phase":"generated",…}, then one {"phase":"first"|"again", answered, lost, seconds, perSecond,
// verified} per phase. Phase "first": every ID is new to the DC (NT signature check, ECDH, a new record and registry
// entry); phase "again": the first `reregister` IDs register again (MAC check only, the NT is unchanged).
import dgram from 'node:dgram';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { defaultAead } from '../../agent/src/crypto/aead.js';
import { Identity } from '../../agent/src/protocol/identity.js';
import * as NT from '../../agent/src/protocol/node-transaction.js';
import {
  NONCE_LENGTH,
  NT_LENGTH,
  REGISTRATION_RESPONSE,
  channelKeys,
  decodeRegistrationBody,
  decodeRegistrationResponseHeader,
  encodeNatProbe,
  encodeRegistrationRequest,
  mac1Key,
  registrationKey,
} from '../../agent/src/protocol/registration.js';
import { Status } from '../../agent/src/protocol/control.js';
import type { Endpoint } from '../../agent/src/types/net.js';

/** One generated terminal, packed: Node Transaction (148) ‖ K_ss (32). */
const RECORD = NT_LENGTH + 32;
/** Answers after which a request counts as lost. */
const LOST_AFTER_MS = 2000;
/** One answer in this many is decrypted and checked (status OK), to be sure "answered" means "registered". */
const VERIFY_EVERY = 257;

interface WorkerJob {
  readonly count: number;
  readonly dcPublicKey: string;
  readonly dcId: string;
}

/** Worker side: `count` identities → packed records (NT ‖ K_ss). */
function generate(job: WorkerJob): Buffer {
  const dcPub = Buffer.from(job.dcPublicKey, 'hex');
  const dcId = Buffer.from(job.dcId.replace(/^0x/, ''), 'hex');
  const out = Buffer.alloc(job.count * RECORD);
  const now = Date.now();
  for (let i = 0; i < job.count; i++) {
    const id = Identity.generate();
    NT.encode(NT.sign(id, { dcId, revoked: false, timestamp: now }), out.subarray(i * RECORD, i * RECORD + NT_LENGTH));
    const x = id.dh(dcPub);
    if (!x) throw new Error('DC public key is not a valid point');
    registrationKey(x).copy(out, i * RECORD + NT_LENGTH);
  }
  return out;
}

if (!isMainThread) {
  const packed = generate(workerData as WorkerJob);
  parentPort!.postMessage(packed.buffer, [packed.buffer as ArrayBuffer]);
}

interface LoadOptions {
  dcPublicKey: string;
  dcId: string;
  host: string;
  port: number;
  count: number;
  reregister: number;
  seconds: number;
  /** Pause between the phases (s): the orchestrator reads the DC's settled memory meanwhile. */
  pause: number;
  window: number;
  cpu: number | undefined;
  threads: number;
  answered: string | undefined;
  /** Source sockets (ports) the terminals are spread over. */
  sockets: number;
}

function parse(argv: string[]): LoadOptions {
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const num = (name: string, def: number): number => {
    const v = get(name);
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new RangeError(`--${name}: not a number: ${v}`);
    return n;
  };
  const dcPublicKey = get('dc-public-key');
  const dcId = get('dc-id');
  if (!dcPublicKey || !dcId) throw new RangeError('--dc-public-key and --dc-id are required');
  const cpu = get('cpu');
  return {
    dcPublicKey,
    dcId,
    host: get('host') ?? '127.0.0.1',
    port: num('port', 7100),
    count: num('count', 100_000),
    reregister: num('reregister', 50_000),
    seconds: num('seconds', 300),
    pause: num('pause', 1),
    window: Math.max(1, num('window', 256)),
    cpu: cpu === undefined ? undefined : Number(cpu),
    threads: Math.max(1, num('threads', 2)),
    answered: get('answered'),
    sockets: Math.max(1, num('sockets', 1)),
  };
}

async function generateAll(o: LoadOptions): Promise<Buffer> {
  const per = Math.ceil(o.count / o.threads);
  const parts = await Promise.all(
    Array.from({ length: o.threads }, (_, t) => {
      const count = Math.max(0, Math.min(per, o.count - t * per));
      return new Promise<Buffer>((resolve, reject) => {
        if (count === 0) return resolve(Buffer.alloc(0));
        const w = new Worker(new URL(import.meta.url), { workerData: { count, dcPublicKey: o.dcPublicKey, dcId: o.dcId } satisfies WorkerJob });
        // Resolved when the thread has exited, not on its message: main() then pins every thread of this process
        // (taskset -a), which fails if one of them exits while it is being pinned.
        let part: Buffer | undefined;
        w.once('message', (ab: ArrayBuffer) => (part = Buffer.from(ab)));
        w.once('error', reject);
        w.once('exit', (code) => (part ? resolve(part) : reject(new Error(`identity worker exited with ${code} before its result`))));
      });
    }),
  );
  return Buffer.concat(parts);
}

/** One phase's line on stdout (dc-capacity.ts reads it). */
export interface PhaseResult {
  phase: string;
  sent: number;
  answered: number;
  lost: number;
  seconds: number;
  perSecond: number;
  verified: number;
  verifyFailed: number;
}

/** Which requests of a phase were answered with status OK, when every answer is checked. */
type Registered = Uint8Array | undefined;

/**
 * One phase's datagrams. The Node Transactions and K_ss are ready; the MAC'd requests (with a fresh request time: the
 * DC accepts ±60 s, and a long phase outlasts that) are built a chunk at a time just ahead of the sending cursor.
 */
interface Phase {
  readonly name: string;
  readonly n: number;
  /** Terminal index (and txid) of request 0; the response echoes the index. */
  readonly base: number;
  /** The request and its NAT probe, built on first use (borrowed). */
  datagrams(i: number): readonly [Buffer, Buffer];
  /** Decrypts and checks the answer to request i: status OK for our txid. */
  check(i: number, response: Buffer): boolean;
}

const SENT = Buffer.alloc(0);
/** Requests built per chunk: ~15 ms of generator time, a fraction of what the window keeps the DC busy with. */
const CHUNK = 512;

/**
 * Sends the phase's requests with `window` in flight. Resolves when all are answered or lost, or `seconds` passed.
 */
function runPhase(socks: readonly dgram.Socket[], o: LoadOptions, ph: Phase, registered?: Registered): Promise<PhaseResult> {
  const { n, base, name: phase } = ph;
  const sentAt = new Float64Array(n);
  const done = new Uint8Array(n);
  let next = 0;
  let oldest = 0;
  let inFlight = 0;
  let answered = 0;
  let lost = 0;
  let verified = 0;
  let verifyFailed = 0;
  let lastAnswerAt = 0;
  const probePort = o.port + 1;
  return new Promise((resolve) => {
    const start = performance.now();
    const sendNext = (): void => {
      while (inFlight < o.window && next < n) {
        const i = next++;
        const [request, probe] = ph.datagrams(i);
        sentAt[i] = performance.now();
        inFlight++;
        const sock = socks[i % socks.length]!;
        sock.send(request, o.port, o.host);
        // A terminal sends its NAT probe beside every request (docs/protocol.md §3.2): the DC's work includes it.
        sock.send(probe, probePort, o.host);
      }
    };
    const finish = (): void => {
      clearInterval(sweeper);
      for (const sock of socks) sock.removeListener('message', onMessage);
      const seconds = ((lastAnswerAt || performance.now()) - start) / 1000;
      resolve({ phase, sent: next, answered, lost, seconds, perSecond: answered / seconds, verified, verifyFailed });
    };
    const onMessage = (msg: Buffer): void => {
      if (msg[0] !== REGISTRATION_RESPONSE || msg.length < 8) return;
      const i = msg.readUInt32BE(4) - base;
      if (i < 0 || i >= n || done[i]) return;
      done[i] = 1;
      answered++;
      inFlight--;
      lastAnswerAt = performance.now();
      if (registered || answered % VERIFY_EVERY === 1) {
        const ok = ph.check(i, msg);
        if (ok) verified++;
        else verifyFailed++;
        if (registered && ok) registered[i] = 1;
      }
      if (next < n) sendNext();
      else if (inFlight === 0) finish();
    };
    const sweeper = setInterval(() => {
      const now = performance.now();
      while (oldest < next && done[oldest]) oldest++;
      for (let i = oldest; i < next; i++) {
        if (!done[i] && now - sentAt[i]! > LOST_AFTER_MS) {
          done[i] = 2;
          lost++;
          inFlight--;
        }
      }
      if (now - start > o.seconds * 1000 || (next >= n && inFlight <= 0)) finish();
      else sendNext();
    }, 100);
    for (const sock of socks) sock.on('message', onMessage);
    sendNext();
  });
}

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  const t0 = performance.now();
  const packed = await generateAll(o);
  const nt = (i: number) => packed.subarray(i * RECORD, i * RECORD + NT_LENGTH);
  const kss = (i: number) => packed.subarray(i * RECORD + NT_LENGTH, (i + 1) * RECORD);
  const macKey = mac1Key(Buffer.from(o.dcPublicKey, "hex"));
  console.log(JSON.stringify({ phase: 'generated', terminals: o.count, seconds: (performance.now() - t0) / 1000 }));
  // From here on one core: the DC has the other one.
  if (o.cpu !== undefined) execFileSync('taskset', ['-a', '-p', '-c', String(o.cpu), String(process.pid)], { stdio: 'ignore' });

  const socks = await Promise.all(
    Array.from({ length: o.sockets }, async () => {
      const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20, sendBufferSize: 8 << 20 });
      await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
      return sock;
    }),
  );
  const locals: Endpoint[] = socks.map((sock) => ({ family: 4, address: '127.0.0.1', port: sock.address().port }));

  const phase = (name: string, count: number, base: number): Phase => {
    const requests: Buffer[] = [];
    const probes: Buffer[] = [];
    const nonces: Buffer[] = [];
    const build = (from: number): void => {
      const time = Date.now();
      for (let i = from; i < Math.min(count, from + CHUNK); i++) {
        const nonce = randomBytes(NONCE_LENGTH);
        const txid = BigInt(base + i);
        nonces[i] = nonce;
        const req = { terminalIndex: base + i, txid, nonce, time, nt: nt(i), locals: [locals[i % socks.length]!], name: '', token: new Uint8Array(0) };
        requests[i] = encodeRegistrationRequest(req, kss(i), macKey);
        probes[i] = encodeNatProbe(0, txid, nt(i).subarray(1, 21));
      }
    };
    build(0);
    return {
      name,
      n: count,
      base,
      datagrams(i) {
        if (requests[i] === undefined) build(i);
        const out = [requests[i]!, probes[i]!] as const;
        // Sent datagrams are not needed again: keep the generator's own memory flat.
        requests[i] = probes[i] = SENT;
        return out;
      },
      // The answer is sealed under K_resp from K_ss and both nonces: decrypting it proves the DC registered us.
      check(i, response) {
        const h = decodeRegistrationResponseHeader(response);
        if (!h.ok) return false;
        const [, , kResp] = channelKeys(kss(i), nonces[i]!, h.value.nonceDc);
        const body = defaultAead.open(kResp, 0, h.value.sealed);
        if (!body) return false;
        const d = decodeRegistrationBody(body);
        return d.ok && d.value.status === Status.OK && d.value.txid === BigInt(base + i);
      },
    };
  };

  const registered: Registered = o.answered ? new Uint8Array(o.count) : undefined;
  console.log(JSON.stringify(await runPhase(socks, o, phase('first', o.count, 1), registered)));
  if (o.answered && registered) {
    const ids: string[] = [];
    for (let i = 0; i < o.count; i++) if (registered[i]) ids.push(`0x${Buffer.from(nt(i).subarray(1, 21)).toString('hex')}`);
    writeFileSync(o.answered, JSON.stringify(ids));
  }
  if (o.reregister > 0) {
    // Let the DC finish its last commit and settle before the next phase.
    await new Promise((r) => setTimeout(r, o.pause * 1000));
    console.log(JSON.stringify({ phase: 'again-start' }));
    console.log(JSON.stringify(await runPhase(socks, o, phase('again', Math.min(o.reregister, o.count), o.count + 1))));
  }
  for (const sock of socks) sock.close();
}

if (isMainThread && import.meta.filename === process.argv[1]) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
