// The local control socket of a running daemon (unix socket, root only): `ntm status`, `ntm connect` and the tests
// ask it questions. One JSON request per line, one JSON answer per line.
import net from 'node:net';
import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { InputError, NotFoundError, NtmError, RefusedError, UnavailableError } from '../types/errors.js';

export type Handler = (req: Record<string, unknown>) => Promise<unknown> | unknown;

export class ControlServer {
  private constructor(private readonly server: net.Server, readonly path: string) {}

  static async listen(path: string, handler: Handler): Promise<ControlServer> {
    mkdirSync(dirname(path), { recursive: true });
    if (existsSync(path)) {
      // A stale socket from a killed daemon; a live one would answer.
      const alive = await request(path, { cmd: 'ping' }, 300).then(() => true, () => false);
      if (alive) throw new NtmError(`another daemon is running on ${path}`);
      unlinkSync(path);
    }
    const server = net.createServer((c) => {
      let buf = '';
      c.setEncoding('utf8');
      c.on('data', (d: string) => {
        buf += d;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          void (async () => {
            let answer: unknown;
            try {
              const req = JSON.parse(line) as Record<string, unknown>;
              answer = req.cmd === 'ping' ? { ok: true } : { ok: true, result: await handler(req) };
            } catch (e) {
              const err = e as Error;
              answer = { ok: false, error: err.name, message: err.message };
            }
            if (!c.destroyed) c.write(JSON.stringify(answer, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) + '\n');
          })();
        }
        if (buf.length > 1 << 20) c.destroy();
      });
      c.on('error', () => undefined);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    chmodSync(path, 0o600);
    return new ControlServer(server, path);
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => this.server.close(() => r()));
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

/** The daemon's error as the same class here, so `ntm` exits with the code its kind deserves (cmd/exit.ts). */
function remoteError(name: string | undefined, message: string): NtmError {
  switch (name) {
    case 'InputError':
      return new InputError(message);
    case 'NotFoundError':
      return new NotFoundError(message);
    case 'ConflictError':
    case 'RejectedError':
    case 'RefusedError':
      return new RefusedError(message);
    default:
      return new NtmError(message);
  }
}

/** Sends one request and returns the `result` (throws with the daemon's message on failure). */
export function request(path: string, req: Record<string, unknown>, timeoutMs = 15_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const c = net.connect(path);
    let buf = '';
    const timer = setTimeout(() => {
      c.destroy();
      reject(new UnavailableError(`no answer from ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    c.setEncoding('utf8');
    c.on('connect', () => c.write(JSON.stringify(req) + '\n'));
    c.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      c.end();
      const a = JSON.parse(buf.slice(0, nl)) as { ok: boolean; result?: unknown; error?: string; message?: string };
      if (a.ok) resolve(a.result);
      else reject(remoteError(a.error, a.message ?? 'request failed'));
    });
    c.on('error', (e) => {
      clearTimeout(timer);
      reject(new UnavailableError(`cannot reach the daemon at ${path}: ${e.message} (is it running?)`));
    });
  });
}
