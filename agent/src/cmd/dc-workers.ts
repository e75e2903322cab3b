// `ntm dc` with dc.workers = N > 1 (issue 15): this process supervises N worker processes, each a whole DC (`ntm dc`
// again, told its number in NTM_DC_WORKER) on the same ports with SO_REUSEPORT and on the same dc.db (dc/siblings.ts
// says what they share and what they ask each other). The supervisor serves no packets: it starts the workers (the
// first alone, so that one process creates the schema), carries their messages to each other, restarts one that died
// (its committed state is in the file; its terminals register again, at whichever worker the kernel now picks), and
// serves the control socket for all of them.
import { fork, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import type { Logger } from '../util/log.js';
import { encodePeer, Peer } from '../protocol/peer.js';
import { Status } from '../protocol/control.js';
import { isSiblingMessage, type SiblingMessage } from '../dc/siblings.js';
import { ControlServer } from './control-socket.js';
import { announce, onShutdown } from './common.js';
import { InputError } from '../types/errors.js';

export const WORKER_ENV = 'NTM_DC_WORKER';

/** This process's worker number and count from NTM_DC_WORKER ("index/count"), when it is a worker. */
export function workerOf(env: NodeJS.ProcessEnv = process.env): { index: number; count: number } | undefined {
  const m = /^(\d+)\/(\d+)$/.exec(env[WORKER_ENV] ?? '');
  if (!m) return undefined;
  const index = Number(m[1]);
  const count = Number(m[2]);
  return index < count ? { index, count } : undefined;
}

/** A control request the supervisor hands a worker, and the worker's answer. */
export type WorkerControl =
  | { readonly ntmDc: 'ctl'; readonly seq: number; readonly req: Record<string, unknown> }
  | { readonly ntmDc: 'ctlAnswer'; readonly seq: number; readonly result?: unknown; readonly error?: string };

function isControl(m: unknown): m is WorkerControl {
  const k = (m as { ntmDc?: string } | null)?.ntmDc;
  return k === 'ctl' || k === 'ctlAnswer';
}

/** A worker's side of the control requests: `handle` is what the control socket of a lone DC does. */
export function serveWorkerControl(handle: (req: Record<string, unknown>) => unknown): void {
  process.on('message', (m: unknown) => {
    if (!isControl(m) || m.ntmDc !== 'ctl') return;
    Promise.resolve()
      .then(() => handle(m.req))
      .then(
        (result) => process.send?.({ ntmDc: 'ctlAnswer', seq: m.seq, result }),
        (e: unknown) => process.send?.({ ntmDc: 'ctlAnswer', seq: m.seq, error: e instanceof Error ? e.message : String(e) }),
      );
  });
}

interface Worker {
  readonly index: number;
  child: ChildProcess | undefined;
  ready: Record<string, unknown> | undefined;
}

/** How long a dead worker waits before it is started again (ms). */
const RESTART_MS = 500;

export async function superviseDcWorkers(o: { count: number; dataDir: string; id: string; publicKey: string; log: Logger }): Promise<void> {
  const { count, log } = o;
  const workers: Worker[] = Array.from({ length: count }, (_, index) => ({ index, child: undefined, ready: undefined }));
  let stopping = false;
  let ctlSeq = 0;
  const ctlPending = new Map<number, (a: WorkerControl & { ntmDc: 'ctlAnswer' }) => void>();

  const route = (from: Worker, m: SiblingMessage): void => {
    if (m.ntmDc === 'answer') return void workers[m.to]?.child?.send(m);
    for (const w of workers) {
      if (w === from) continue;
      if (w.child?.connected && w.ready) w.child.send(m);
      else if (m.ntmDc === 'ask') {
        // A worker that is not up has no terminals to offer: answered for it at once, so the asker need not wait.
        const frame = encodePeer({ type: Peer.PEER_INFO_RESPONSE, txid: 0n, time: Date.now(), status: Status.NOT_FOUND, message: 'worker down' });
        from.child?.send({ ntmDc: 'answer', to: from.index, seq: m.seq, frame: frame.toString('base64') });
      }
    }
  };

  const start = (w: Worker): Promise<void> =>
    new Promise((resolve, reject) => {
      const child = fork(process.argv[1]!, process.argv.slice(2), {
        env: { ...process.env, [WORKER_ENV]: `${w.index}/${count}` },
        execArgv: process.execArgv,
        stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
      });
      w.child = child;
      w.ready = undefined;
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (!w.ready) {
          try {
            const j = JSON.parse(line) as Record<string, unknown>;
            if (j.ready === true) {
              w.ready = j;
              return resolve();
            }
          } catch {
            // Not the announcement: passed on below.
          }
        }
        process.stdout.write(`${line}\n`);
      });
      child.on('message', (m: unknown) => {
        if (isSiblingMessage(m)) route(w, m);
        else if (isControl(m) && m.ntmDc === 'ctlAnswer') ctlPending.get(m.seq)?.(m);
      });
      child.on('exit', (code, signal) => {
        const wasReady = !!w.ready;
        w.ready = undefined;
        if (w.child === child) w.child = undefined;
        if (stopping) return;
        if (!wasReady) return reject(new Error(`dc worker ${w.index} exited before it was ready (${signal ?? code})`));
        log.error('dc worker died; starting it again', { worker: w.index, code, signal });
        setTimeout(() => {
          if (!stopping) start(w).catch((e: unknown) => log.error('dc worker did not start again', { worker: w.index, err: e }));
        }, RESTART_MS);
      });
    });

  const stopAll = async (): Promise<void> => {
    stopping = true;
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            const c = w.child;
            if (!c || c.exitCode !== null || c.signalCode !== null) return resolve();
            const kill = setTimeout(() => c.kill('SIGKILL'), 5000);
            c.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            c.kill('SIGTERM');
          }),
      ),
    );
  };

  try {
    // The first alone: it creates the schema (migrations are not safe to run from several processes at once).
    await start(workers[0]!);
    await Promise.all(workers.slice(1).map(start));
  } catch (e) {
    await stopAll();
    throw e;
  }

  /** Sends `req` to every worker that is up; their answers in worker order. */
  const askAll = (req: Record<string, unknown>): Promise<Array<{ worker: number; result?: unknown; error?: string }>> =>
    Promise.all(
      workers
        .filter((w) => w.child?.connected && w.ready)
        .map(
          (w) =>
            new Promise<{ worker: number; result?: unknown; error?: string }>((resolve) => {
              const seq = ++ctlSeq;
              const timer = setTimeout(() => {
                ctlPending.delete(seq);
                resolve({ worker: w.index, error: 'no answer' });
              }, 5000);
              ctlPending.set(seq, (a) => {
                clearTimeout(timer);
                ctlPending.delete(seq);
                resolve({ worker: w.index, ...(a.error !== undefined ? { error: a.error } : { result: a.result }) });
              });
              w.child!.send({ ntmDc: 'ctl', seq, req });
            }),
        ),
    );

  // One control socket for the DC: status of every worker; a revocation or reinstatement goes to all of them (each
  // holds records of terminals the others serve).
  const ctl = await ControlServer.listen(join(o.dataDir, 'dc.sock'), async (req) => {
    const answers = await askAll(req);
    const failed = answers.find((a) => a.error !== undefined);
    if (req.cmd === 'status') return { role: 'dc', id: o.id, workers: answers.map((a) => ({ worker: a.worker, ...(a.result as object), ...(a.error ? { error: a.error } : {}) })) };
    if (failed) throw new InputError(`worker ${failed.worker}: ${failed.error}`);
    if (req.cmd === 'revoke' && typeof (answers[0]?.result as { known?: unknown })?.known === 'boolean')
      return { ...(answers[0]!.result as object), known: answers.some((a) => (a.result as { known?: boolean }).known) };
    return answers[0]?.result;
  });

  const first = workers[0]!.ready!;
  announce({ role: 'dc', ready: true, id: o.id, publicKey: o.publicKey, port: first.port, probePort: first.probePort, operatorPort: null, workers: count, pids: workers.map((w) => w.child?.pid) });
  onShutdown(log, async () => {
    await ctl.close();
    await stopAll();
  });
}
