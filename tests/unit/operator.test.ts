// The ISP's side of a DC, on real processes and real sockets (loopback): `ntm dc` with enrollment-key admission, its
// operator API (bearer token, OpenAPI-described answers), its Prometheus /metrics; `ntm keys` and `ntm enroll` as an
// operator and a subscriber run them; a revoked terminal refused; no secret in any log of the run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { decodeEnrollment } from '../../agent/src/agent/enrollment.js';
import { Identity } from '../../agent/src/protocol/identity.js';
import { TerminalHost } from '../../agent/src/terminal/host.js';
import { UdpBind } from '../../agent/src/dataplane/conn/udp.js';
import { DataEngine } from '../../agent/src/dataplane/engine.js';
import { PASS_THROUGH } from '../../agent/src/dataplane/policy.js';
import { validate, type Schema } from '../../web-ui/server/schema.js';
import { OPERATOR_COMPONENTS } from '../../agent/src/operator/openapi.js';
import { firstJsonLine } from '../lib/ntm.js';
import { RegistrationRefusedError } from '../../agent/src/types/errors.js';
import { parseMetrics } from '../lib/metrics.js';

const NTM = resolve(import.meta.dirname, '..', '..', 'agent/src/cmd/ntm.js');
const COMPONENTS = OPERATOR_COMPONENTS as Record<string, Schema>;

function ntm(args: string[]) {
  const r = spawnSync(process.execPath, [NTM, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Dc {
  proc: ChildProcess;
  ready: { id: string; publicKey: string; port: number; operatorPort: number };
  logs: () => string;
  base: string;
  token: string;
}

async function startDc(dir: string, port = 0): Promise<Dc> {
  // Loopback only, any free port (other tests and engineers share this machine).
  const at = `127.0.0.1:${port}`;
  const dcArgs = ['--data-dir', dir, '--listen', at, '--advertise', at, '--operator-listen', '127.0.0.1:0', '--admission', 'key'];
  const proc = spawn(process.execPath, [NTM, 'dc', ...dcArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let logs = '';
  proc.stdout.on('data', (d: Buffer) => (logs += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (logs += d.toString()));
  const ready = await firstJsonLine<Dc['ready']>(proc, 20_000, 'ntm dc ready', (j) => 'operatorPort' in j);
  return { proc, ready, logs: () => logs, base: `http://127.0.0.1:${ready.operatorPort}`, token: readFileSync(join(dir, 'operator-token'), 'utf8').trim() };
}

async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null) return;
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await done;
}

async function api(dc: Dc, method: string, path: string, body?: unknown, token: string | null = dc.token) {
  const r = await fetch(dc.base + path, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return { status: r.status, body: (await r.json()) as unknown, headers: r.headers };
}

function conforms(schema: Schema, value: unknown): void {
  const f = validate(schema, value, COMPONENTS);
  assert.equal(f, null, `answer does not match the OpenAPI schema: ${JSON.stringify(f)} in ${JSON.stringify(value)}`);
}

async function scrape(base: string): Promise<Map<string, number>> {
  const r = await fetch(`${base}/metrics`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parseMetrics(await r.text());
}

/**
 * Registers `identity` with the DC in-process, presenting `token`, with a short deadline; resolves to the outcome:
 * "registered", the DC's refusal reason (an authenticated answer), or the error's name (no answer).
 */
async function register(dc: Dc, identity: Identity, token?: Buffer): Promise<'registered' | string> {
  const bind = await UdpBind.open({ listen: '127.0.0.1:0' });
  const host = new TerminalHost({ bind, locals: () => [{ family: 4, address: '127.0.0.1', port: bind.port }], retry: { initialMs: 200, maxMs: 400, deadlineMs: 1500 } });
  // The engine reads the socket and hands signalling to the host (no packet queues are opened).
  new DataEngine({ bind, tunnels: host, policy: PASS_THROUGH });
  const node = host.addNode(identity, { id: Buffer.from(dc.ready.id.slice(2), 'hex'), publicKey: Buffer.from(dc.ready.publicKey, 'hex'), endpoint: { family: 4, address: '127.0.0.1', port: dc.ready.port } }, token ? { token } : {});
  try {
    await node.register();
    await node.deregister().catch(() => undefined);
    return 'registered';
  } catch (e) {
    return e instanceof RegistrationRefusedError ? e.reason : (e as Error).name;
  } finally {
    await host.close();
  }
}

test('operator API, enrollment keys and /metrics of a running DC', { timeout: 120_000 }, async () => {
  const root = mkdtempSync(join(tmpdir(), 'ntm-operator-'));
  const dcDir = join(root, 'dc');
  const outputs: string[] = [];
  const run = (args: string[]) => {
    const r = ntm(args);
    // Logs are stderr; stdout is the command's answer (`ntm keys create` prints the key it made, on purpose).
    outputs.push(r.stderr);
    return r;
  };
  let dc: Dc | undefined;
  try {
    // The DC's advertised address must be the real one for the keys: start once to learn the port, then keep it.
    dc = await startDc(dcDir);
    await stop(dc.proc);
    outputs.push(dc.logs());
    dc = await startDc(dcDir, dc.ready.port);
    const before = await scrape(dc.base);
    assert.ok((before.get('process_resident_memory_bytes') ?? 0) > 10e6, 'memory is exported');
    assert.equal(before.get('ntm_dc_terminals'), 0);
    assert.equal(before.get('ntm_dc_pool_capacity'), 65_533, 'an ISP DC hands out a /16 by default');

    // Without or with a wrong token: 401 and no data.
    for (const token of [null, 'wrong-token-wrong-token']) {
      const r = await api(dc, 'GET', '/api/v1/terminals', undefined, token);
      assert.equal(r.status, 401);
      assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
      conforms({ $ref: '#/components/schemas/Error' }, r.body);
    }
    const openapi = (await api(dc, 'GET', '/openapi.json', undefined, null)).body as { paths: Record<string, unknown> };
    assert.ok(openapi.paths['/api/v1/terminals/{id}/revoke']);

    // Keys from the CLI (one use, tagged with the plan) and from the API (reusable, expired after 1 s).
    const made = run(['keys', 'create', '--data-dir', dcDir, '--advertise', `127.0.0.1:${dc.ready.port}`, '--subscriber', 'S-001', '--tag', 'plan:fiber-1g', '--uses', '1', '--expires', '1h', '--json']);
    assert.equal(made.code, 0, made.stderr);
    const { key, token } = JSON.parse(made.stdout) as { key: { id: string; state: string }; token: string };
    assert.equal(key.state, 'valid');
    const shortLived = await api(dc, 'POST', '/api/v1/keys', { subscriber: 'S-002', tags: ['plan:dsl'], expires: '1s', uses: 0 });
    assert.equal(shortLived.status, 201, JSON.stringify(shortLived.body));
    conforms({ $ref: '#/components/schemas/CreatedKey' }, shortLived.body);
    const badKey = await api(dc, 'POST', '/api/v1/keys', { tags: ['NOT A TAG'] });
    assert.equal(badKey.status, 400);

    // A terminal enrolls with the key, as a subscriber would: `ntm enroll KEY`.
    const phoneDir = join(root, 'phone');
    const tOk = performance.now();
    const enrolled = run(['enroll', '--data-dir', phoneDir, '--name', 'phone', token]);
    // A whole `ntm enroll` that succeeds: the process's start (seconds on a loaded machine) and one registration.
    const okMs = performance.now() - tOk;
    assert.equal(enrolled.code, 0, enrolled.stderr);
    const phoneId = (JSON.parse(enrolled.stdout) as { id: string }).id;

    // The key was used once: a second terminal is told so (the DC counts why), and so is one without any key, or with
    // a key the DC never made.
    const secret = (decodeEnrollment(token) as { ok: true; token: { secret: Buffer } }).token.secret;
    assert.equal(await register(dc, Identity.generate(), secret), 'key-used-up');
    assert.equal(await register(dc, Identity.generate()), 'not-admitted');
    assert.equal(await register(dc, Identity.generate(), Buffer.alloc(16, 7)), 'key-unknown');
    const t0 = performance.now();
    const second = run(['enroll', '--data-dir', join(root, 'phone2'), token]);
    assert.equal(second.code, 77, `a refused enrollment is a refusal, not an unreachable DC: ${second.stderr}`);
    assert.match(second.stderr, /^ntm: the DC refused the registration: this enrollment key is used up; ask for a new one\n$/);
    // At once: about as long as the enrollment that succeeded, not that plus `ntm enroll`'s 6 s of retransmissions.
    const refusedMs = performance.now() - t0;
    assert.ok(refusedMs < okMs + 3000, `at once, not after the registration deadline: ${Math.round(refusedMs)} ms (a successful enroll took ${Math.round(okMs)} ms)`);

    // Expired: `ntm enroll` refuses it itself (77); the DC refuses its secret too.
    await new Promise((r) => setTimeout(r, 1200));
    const expired = shortLived.body as { key: { id: string }; token: string };
    const late = run(['enroll', '--data-dir', join(root, 'phone3'), expired.token]);
    assert.equal(late.code, 77, late.stderr);
    assert.match(late.stderr, /expired/);
    const expiredSecret = (decodeEnrollment(expired.token, { now: null }) as { ok: true; token: { secret: Buffer } }).token.secret;
    assert.equal(await register(dc, Identity.generate(), expiredSecret), 'key-expired');

    // Revoked: a fresh reusable key works until it is revoked through the CLI.
    const reusable = JSON.parse(run(['keys', 'create', '--data-dir', dcDir, '--advertise', `127.0.0.1:${dc.ready.port}`, '--uses', '0', '--json']).stdout) as { key: { id: string }; token: string };
    const reusableSecret = (decodeEnrollment(reusable.token) as { ok: true; token: { secret: Buffer } }).token.secret;
    assert.equal(await register(dc, Identity.generate(), reusableSecret), 'registered');
    const revokedKey = run(['keys', 'revoke', '--data-dir', dcDir, '--json', reusable.key.id]);
    assert.equal(revokedKey.code, 0, revokedKey.stderr);
    assert.equal((JSON.parse(revokedKey.stdout) as { state: string }).state, 'revoked');
    assert.equal(await register(dc, Identity.generate(), reusableSecret), 'key-revoked');
    const revokedEnroll = run(['enroll', '--data-dir', join(root, 'phone4'), reusable.token]);
    assert.equal(revokedEnroll.code, 77, revokedEnroll.stderr);
    assert.match(revokedEnroll.stderr, /this enrollment key was revoked; ask for a new one/);
    assert.equal(run(['keys', 'revoke', '--data-dir', dcDir, 'k000000000000']).code, 66, 'no such key');

    const after = await scrape(dc.base);
    // Counted per request received (a refused terminal is told, and stops).
    for (const reason of ['used-up', 'no-key', 'expired', 'revoked', 'unknown-key']) assert.ok((after.get(`ntm_dc_enrollment_refusals_total{reason="${reason}"}`) ?? 0) >= 1, reason);
    assert.equal(after.get('ntm_dc_registrations_total{kind="first"}'), 2, 'the phone and the reusable key\'s terminal');
    assert.equal(after.get('ntm_dc_terminals'), 2);
    assert.ok((after.get('ntm_dc_packets_received_total') ?? 0) > (before.get('ntm_dc_packets_received_total') ?? 0));
    assert.ok((after.get('ntm_dc_drops_total{reason="reg-not-admitted"}') ?? 0) >= 5);

    // The operator's view: the phone, its subscriber and plan, its last registration.
    const terminals = await api(dc, 'GET', '/api/v1/terminals');
    assert.equal(terminals.status, 200);
    conforms({ type: 'array', items: { $ref: '#/components/schemas/Terminal' } }, terminals.body);
    const phone = (terminals.body as Array<{ id: string; subscriber: string; tags: string[]; lastRegistration: number; name: string }>).find((t) => t.id === phoneId);
    assert.ok(phone, 'the enrolled phone is listed');
    assert.equal(phone.subscriber, 'S-001');
    assert.deepEqual(phone.tags, ['plan:fiber-1g']);
    assert.ok(Math.abs(phone.lastRegistration - Date.now()) < 60_000);
    const subs = await api(dc, 'GET', '/api/v1/subscribers');
    conforms({ type: 'array', items: { $ref: '#/components/schemas/Subscriber' } }, subs.body);
    assert.deepEqual(
      (subs.body as Array<{ subscriber: string; terminals: unknown[] }>).map((s) => [s.subscriber, s.terminals.length]),
      [
        ['S-001', 1],
        ['S-002', 0],
      ],
    );
    const keys = await api(dc, 'GET', '/api/v1/keys');
    conforms({ type: 'array', items: { $ref: '#/components/schemas/Key' } }, keys.body);
    assert.deepEqual((keys.body as Array<{ state: string }>).map((k) => k.state).sort(), ['expired', 'revoked', 'used-up']);

    // Revoke the phone through the API: it is refused from then on, though its own key pair still signs.
    const phoneIdentity = await Identity.load(join(phoneDir, 'terminal.key'));
    assert.equal(await register(dc, phoneIdentity), 'registered', 'an admitted terminal re-registers without a key');
    const revoked = await api(dc, 'POST', `/api/v1/terminals/${phoneId}/revoke`);
    assert.equal(revoked.status, 200);
    conforms({ $ref: '#/components/schemas/Revoked' }, revoked.body);
    assert.equal((await api(dc, 'POST', `/api/v1/terminals/0x${'0'.repeat(40)}/revoke`)).status, 404);
    const dropsBefore = (await scrape(dc.base)).get('ntm_dc_drops_total{reason="reg-revoked"}') ?? 0;
    assert.equal(await register(dc, phoneIdentity), 'revoked');
    assert.ok(((await scrape(dc.base)).get('ntm_dc_drops_total{reason="reg-revoked"}') ?? 0) > dropsBefore, 'refused as revoked');
    const listed = (await api(dc, 'GET', '/api/v1/terminals')).body as Array<{ id: string; revoked: boolean }>;
    assert.equal(listed.find((t) => t.id === phoneId)?.revoked, true);

    // No secret in any log of the run: keys (text and raw secret), the operator token.
    await stop(dc.proc);
    outputs.push(dc.logs());
    const all = outputs.join('\n');
    assert.ok(all.includes('"msg":"registration refused: enrollment key not valid"'), 'the run did log (the grep looks at real logs)');
    const secrets = [dc.token, token, expired.token, reusable.token, ...[secret, expiredSecret, reusableSecret].flatMap((s) => [s.toString('hex'), s.toString('base64'), s.toString('base64url')])];
    for (const s of secrets) assert.ok(!all.includes(s), `a secret (${s.slice(0, 6)}…) appears in the logs`);
  } finally {
    if (dc) await stop(dc.proc);
    rmSync(root, { recursive: true, force: true });
  }
});
