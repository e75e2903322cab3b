// Issue 15, the DC on several cores: `ntm dc --workers 2` (real processes: the supervisor and two workers sharing one
// UDP port with SO_REUSEPORT and one dc.db) and terminals over real UDP on loopback (TerminalHost, in this process,
// each from its own source port). Registrations spread over both workers (worker k hands out the pool slots ≡ k mod 2,
// so a terminal's address says which one registered it); a direction between terminals of different workers gives a
// tunnel that carries packets, and its name resolves on the other worker; under 2,000 registrations from the capacity
// benchmark's generator both workers commit at once and the registry stays one chain that verifies; a worker killed
// with SIGKILL while registrations are in flight loses none that was answered, and is started again. The per-source
// limits and the cookie under load are lifted: every terminal here comes from 127.0.0.1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { openDb } from '../../agent/src/store/db.js';
import { Identity } from '../../agent/src/protocol/identity.js';
import { SqliteRegistry } from '../../agent/src/registry/sqlite.js';
import { TerminalHost } from '../../agent/src/terminal/host.js';
import { UdpBind } from '../../agent/src/dataplane/conn/udp.js';
import { DataEngine } from '../../agent/src/dataplane/engine.js';
import { PASS_THROUGH } from '../../agent/src/dataplane/policy.js';
import { OUT_RESULT } from '../../agent/src/dataplane/counts.js';
import { request } from '../../agent/src/cmd/control-socket.js';
import { nativeAddon } from '../../agent/src/native.js';
import type { Endpoint } from '../../agent/src/types/net.js';
import type { RegistrationResult } from '../../agent/src/protocol/registration.js';
import { NTM, ROOT, firstJsonLine, freePortPair, tempDir } from '../lib/ntm.js';

const LOAD_JS = join(ROOT, 'dist/tests/bench/dc-load.js');

type Status = { workers: Array<{ worker: number; pid: number; terminals: number; counts: Record<string, number>; error?: string }> };

function ipv4Packet(src: string, dst: string, payload: Buffer): Buffer {
  const p = Buffer.alloc(20 + payload.length);
  p[0] = 0x45;
  p.writeUInt16BE(p.length, 2);
  p[8] = 64;
  p[9] = 253; // RFC 3692 experimentation
  src.split('.').forEach((x, i) => (p[12 + i] = Number(x)));
  dst.split('.').forEach((x, i) => (p[16 + i] = Number(x)));
  payload.copy(p, 20);
  return p;
}

interface Terminal {
  readonly name: string;
  readonly host: TerminalHost;
  readonly node: ReturnType<TerminalHost['addNode']>;
  readonly engine: DataEngine;
  readonly inbox: Buffer[];
}

async function terminal(dc: { id: Uint8Array; publicKey: Uint8Array }, port: number, name: string): Promise<Terminal> {
  const bind = await UdpBind.open({ listen: '127.0.0.1:0' });
  const locals = (): Endpoint[] => [{ family: 4, address: '127.0.0.1', port: bind.port }];
  const host = new TerminalHost({ bind, locals });
  const inbox: Buffer[] = [];
  const engine = new DataEngine({ bind, tunnels: host, policy: PASS_THROUGH, writer: { write: (p) => (inbox.push(Buffer.from(p)), true) } });
  const node = host.addNode(Identity.generate(), { id: Buffer.from(dc.id), publicKey: Buffer.from(dc.publicKey), endpoint: { family: 4, address: '127.0.0.1', port } }, { name });
  return { name, host, node, engine, inbox };
}

/** Which worker handed out `v4` (slot parity: worker k of 2 takes the slots ≡ k mod 2; the pool is aligned). */
const workerOfAddress = (v4: string): number => Number(v4.split('.')[3]) % 2;

/** The registry as the workers left it: verified by the registry's own check; every answered terminal's row and entry. */
async function ledger(path: string): Promise<{ entries: number; ok: boolean; rows: Map<string, { v4: string; nt: Buffer }>; latest: (id: string) => Buffer | undefined }> {
  const db = openDb(path);
  try {
    const report = await new SqliteRegistry(db).verify();
    const rows = new Map((db.prepare('SELECT id, v4, nt FROM dc_terminals').all() as Array<{ id: string; v4: string; nt: Buffer }>).map((r) => [r.id, r]));
    const latest = new Map<string, Buffer>();
    for (const r of db.prepare("SELECT id, bytes FROM registry WHERE kind = 'node' ORDER BY seq").all() as Array<{ id: string; bytes: Buffer }>) latest.set(r.id, r.bytes);
    return { ...report, rows, latest: (id) => latest.get(id) };
  } finally {
    db.close();
  }
}

async function waitFor(what: string, f: () => Promise<boolean>, ms: number): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) if (await f().catch(() => false)) return;
  assert.fail(`timed out waiting for ${what}`);
}

test('dc.workers = 2: spread, cross-worker direction, one chain, SIGKILL of a worker loses nothing answered', { timeout: 120_000 }, async (t) => {
  // The workers need the native UDP socket (SO_REUSEPORT); scripts/setup builds it, so its absence is a failure.
  assert.ok(nativeAddon(), 'the native addon is built (npm run build:native): dc.workers needs its UDP socket');
  const tmp = tempDir('ntm-dc-workers-');
  const terminals: Terminal[] = [];
  let dc: ChildProcess | undefined;
  let out = '';
  try {
    const port = await freePortPair();
    dc = spawn(process.execPath, [NTM, 'dc', '--workers', '2', '--data-dir', tmp.path, '--listen', `127.0.0.1:${port}`, '--operator-listen', '', '--pool', '198.18.0.0/16', ...['--set', 'dc.newPerSourceBurst=1000000', '--set', 'dc.newPerSourcePerMin=1000000', '--set', 'dc.cookieAbovePerSec=1000000']], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    dc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const ready = await firstJsonLine(dc, 30_000, 'ntm dc --workers 2', (j) => j.ready === true);
    assert.equal(ready.workers, 2);
    const dcId = { id: Buffer.from(String(ready.id).slice(2), 'hex'), publicKey: Buffer.from(String(ready.publicKey), 'hex') };
    const sock = join(tmp.path, 'dc.sock');
    const status = async () => (await request(sock, { cmd: 'status' })) as Status;

    // 16 terminals, each from its own source port: the kernel's 4-tuple hash puts them on both workers (all on one:
    // 2^-15).
    const results = new Map<Terminal, RegistrationResult>();
    for (let i = 0; i < 16; i++) terminals.push(await terminal(dcId, port, `t${i}`));
    await Promise.all(terminals.map(async (x) => results.set(x, await x.node.register())));
    const byWorker = [0, 1].map((w) => terminals.filter((x) => workerOfAddress(results.get(x)!.v4) === w));
    t.diagnostic(`registered per worker: ${byWorker.map((l) => l.length).join(' / ')}`);
    assert.ok(byWorker[0]!.length > 0 && byWorker[1]!.length > 0, 'both workers registered terminals');
    const st = await status();
    assert.deepEqual(st.workers.map((w) => w.counts['registrations-new'] ?? 0), byWorker.map((l) => l.length), 'each worker counted the ones its slots say');
    assert.equal(new Set([...results.values()].map((r) => r.v4)).size, 16, 'no address handed out twice');

    // A direction asked on one worker for a terminal of the other: by name, then by virtual address.
    const [a, b, c] = [byWorker[0]![0]!, byWorker[1]![0]!, byWorker[1]![1] ?? byWorker[0]![1]!];
    const ra = results.get(a)!;
    const rb = results.get(b)!;
    // The name another worker registered resolves here too (the row read from the shared file).
    assert.equal((await a.node.resolve({ kind: 'name', name: `${b.name}.ntm` }))?.v4, rb.v4, 'RESOLVE of a terminal of the other worker');
    const tab = await a.host.connect(a.node, { kind: 'name', name: `${b.name}.ntm` });
    assert.equal(tab.state, 'up');
    assert.equal(tab.peerId, b.node.id);
    assert.equal(a.engine.fromLan(ipv4Packet(ra.v4, rb.v4, Buffer.from('across workers'))), OUT_RESULT.sent);
    await waitFor('the packet through the tunnel', async () => b.inbox.length > 0, 5000);
    assert.equal(b.inbox[0]!.subarray(20).toString(), 'across workers');
    const tba = await b.host.connect(b.node, { kind: 'v4', address: results.get(c === b ? a : c)!.v4 });
    assert.equal(tba.state, 'up');
    const via = (await status()).workers.reduce((n, w) => n + (w.counts['direction-via-worker'] ?? 0), 0);
    assert.ok(via >= 1, `directions answered by the other worker: ${via}`);

    // Both workers committing at once: 2,000 first-time registrations from the capacity benchmark's generator (16
    // source ports, 64 in flight), every answer checked; then one chain holding each answered ID's Node Transaction.
    const answeredFile = join(tmp.path, 'answered.json');
    const gen = spawn(process.execPath, [LOAD_JS, '--dc-public-key', String(ready.publicKey), '--dc-id', String(ready.id), '--port', String(port), '--count', '2000', '--reregister', '0', '--window', '64', '--threads', '1', '--seconds', '60', '--sockets', '16', '--answered', answeredFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    const genCode = await new Promise<number | null>((r) => gen.once('exit', r));
    assert.equal(genCode, 0, 'the generator ran');
    const loaded = JSON.parse(readFileSync(answeredFile, 'utf8')) as string[];
    const perWorker = (await status()).workers.map((w) => w.counts['registrations-new'] ?? 0);
    t.diagnostic(`generator: ${loaded.length} of 2000 answered OK; registrations per worker ${perWorker.join(' / ')}`);
    assert.ok(loaded.length >= 1900, `most of the 2,000 were answered (${loaded.length})`);
    assert.ok(perWorker.every((n) => n > 500), 'both workers took a share');
    {
      const l = await ledger(join(tmp.path, 'dc.db'));
      assert.ok(l.ok, 'the chain verifies after both workers appended to it at once');
      for (const id of loaded) assert.ok(l.rows.get(id) && l.latest(id)?.equals(l.rows.get(id)!.nt), `${id}: row and latest registry entry`);
    }

    // SIGKILL one worker while 16 more terminals register: every one answered is in the file, with the address it was
    // told; the supervisor starts the worker again.
    const victim = st.workers[1]!.pid;
    const more: Terminal[] = [];
    for (let i = 0; i < 16; i++) more.push(await terminal(dcId, port, `m${i}`));
    terminals.push(...more);
    const pending = more.map(async (x) => results.set(x, await x.node.register()).get(x));
    await new Promise((r) => setTimeout(r, 5));
    process.kill(victim, 'SIGKILL');
    const settled = await Promise.allSettled(pending);
    for (const r of settled) if (r.status === 'rejected') t.diagnostic(`not answered: ${String(r.reason)}`);
    await waitFor(
      'the killed worker started again',
      async () => {
        const s = await status();
        return s.workers.length === 2 && s.workers.every((w) => !w.error) && !s.workers.some((w) => w.pid === victim);
      },
      30_000,
    );
    const answered = [...results.entries()];
    t.diagnostic(`answered before and around the kill: ${answered.length} of 32`);
    assert.ok(answered.length > 16, 'registrations went on through the kill (the other worker took the killed one\'s share)');

    // The file while the DC runs (WAL: readers see every commit).
    const l = await ledger(join(tmp.path, 'dc.db'));
    assert.ok(l.ok, 'the registry chain verifies');
    for (const [x, r] of answered) {
      const id = x.node.id;
      const row = l.rows.get(id);
      assert.equal(row?.v4, r.v4, `${x.name} is in the terminal table with the address it was told`);
      assert.ok(row && l.latest(id)?.equals(row.nt), `${x.name}'s Node Transaction is its latest registry entry`);
    }

    // After the restart the killed worker's terminals register again (its HINT at start; docs/protocol.md §3.2) and a
    // direction reaches one of them from a terminal that registered during the kill.
    let up = false;
    for (const end = Date.now() + 30_000; !up && Date.now() < end; await new Promise((r) => setTimeout(r, 200))) {
      const x = more.find((m) => results.has(m))!;
      up = await x.host.connect(x.node, { kind: 'name', name: `${b.name}.ntm` }).then((tn) => tn.state === 'up', () => false);
    }
    assert.ok(up, `a direction to ${b.name} (its worker was killed) after the restart`);
  } catch (e) {
    t.diagnostic(out.slice(-4000));
    throw e;
  } finally {
    for (const x of terminals) await x.host.close().catch(() => undefined);
    if (dc && dc.exitCode === null && dc.signalCode === null) {
      const exited = new Promise((r) => dc!.once('exit', r));
      dc.kill('SIGTERM');
      const kill = setTimeout(() => dc!.kill('SIGKILL'), 8000);
      await exited;
      clearTimeout(kill);
    }
    tmp.remove();
  }
});
