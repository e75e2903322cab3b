// The web API through the fake agent with real HTTP on 127.0.0.1: the whole household flow with its status codes
// and messages, every response checked against the OpenAPI document, the document itself, live updates (SSE),
// internal errors kept out of responses, and a restart over the same database file.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FakeAgent } from '../../agent/src/agent/fake-agent.js';
import { HouseholdStore } from '../../agent/src/agent/household-store.js';
import type { DiscoveredDevice } from '../../agent/src/discovery/types.js';
import type { AgentApi } from '../../agent/src/types/household.js';
import { createLogger } from '../../agent/src/util/log.js';
import { createWebApp, type WebApp } from '../../web-ui/server/app.js';
import { COMPONENTS } from '../../web-ui/server/openapi.js';
import { validate, type Schema } from '../../web-ui/server/schema.js';
import { WebClient, type WebResponse } from '../../web-ui/server/testing/client.js';

const ROOT = resolve(import.meta.dirname, '..', '..', '..');
const CODE = 'K7QM-2XPA-9RWD';
const PASSWORD = 'correct horse battery';
const PHONE = '0x' + 'ab'.repeat(20);

interface Env {
  dir: string;
  store: HouseholdStore;
  fake: FakeAgent;
  app: WebApp;
  base: string;
  logs: string[];
}

async function start(dir: string, api?: (fake: FakeAgent) => AgentApi): Promise<Env> {
  const logs: string[] = [];
  const store = HouseholdStore.open(join(dir, 'agent.db'));
  const fake = new FakeAgent({ store });
  const app = createWebApp({
    api: api ? api(fake) : fake,
    store,
    setupCode: CODE,
    log: createLogger('debug', {}, (l) => logs.push(l)),
    live: { intervalMs: 100 },
  });
  const { port } = await app.listen('127.0.0.1:0');
  return { dir, store, fake, app, base: `http://127.0.0.1:${port}`, logs };
}

async function stop(e: Env): Promise<void> {
  await e.app.close();
  e.store.close();
}

type Doc = {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<string, Record<string, { operationId: string; parameters?: { name: string; in: string; required: boolean }[]; responses: Record<string, { description: string; content?: Record<string, { schema: Schema }> }>; requestBody?: unknown; security?: unknown[] }>>;
  components: { schemas: Record<string, Schema>; securitySchemes: Record<string, unknown> };
};

/** Checks a response against the document: the status is documented for the operation and the body fits. */
function conforms(doc: Doc, operationId: string, r: WebResponse): void {
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      if (op.operationId !== operationId) continue;
      const resp = op.responses[String(r.status)];
      assert.ok(resp, `${method.toUpperCase()} ${path}: status ${r.status} is not documented (${r.text.slice(0, 200)})`);
      const schema = resp.content?.['application/json']?.schema;
      if (!schema) {
        assert.equal(r.text, '', `${operationId}: ${r.status} has no documented body`);
        return;
      }
      const f = validate(schema, r.body, doc.components.schemas);
      assert.equal(f, null, `${operationId} ${r.status}: ${JSON.stringify(f)} in ${r.text.slice(0, 300)}`);
      return;
    }
  }
  assert.fail(`no operation ${operationId}`);
}

function expectError(r: WebResponse, status: number, code: string, field?: string): void {
  assert.equal(r.status, status, r.text);
  const b = r.body as { error: string; message: string; field?: string };
  assert.equal(b.error, code, r.text);
  assert.ok(typeof b.message === 'string' && b.message.length > 3, r.text);
  if (field !== undefined) assert.equal(b.field, field, r.text);
  assert.match(String(r.headers['content-type']), /application\/json/);
}

const LAMP: DiscoveredDevice = {
  name: 'Living Room Lamp',
  kind: 'lamp',
  mac: '02:00:00:00:00:10',
  ipv4: '192.168.1.10',
  ipv6: 'fd6e:746d:1::10',
  host: 'lamp-1.local',
  online: true,
  sources: ['mdns', 'neighbour'],
  lastSeen: Date.now(),
  services: [{ type: '_http._tcp', name: 'Living Room Lamp', host: 'lamp-1.local', port: 80, txt: {} }],
};

/** Reads server-sent events from /api/live until `done` says so (or the deadline). */
function readLive(base: string, cookie: string, done: (events: { event: string; data: unknown }[]) => boolean, act: () => void, timeoutMs = 5000): Promise<{ event: string; data: unknown }[]> {
  return new Promise((resolvePromise, reject) => {
    const events: { event: string; data: unknown }[] = [];
    const req = request(new URL('/api/live', base), { headers: { cookie, accept: 'text/event-stream' } }, (res) => {
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers['content-type']), /text\/event-stream/);
      let buf = '';
      let acted = false;
      const timer = setTimeout(() => {
        req.destroy();
        reject(new Error(`timeout; got ${JSON.stringify(events)}`));
      }, timeoutMs);
      res.on('data', (c: Buffer) => {
        buf += c.toString();
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (ev && data) events.push({ event: ev, data: JSON.parse(data) });
          if (!acted && events.length > 0) {
            acted = true;
            act();
          }
          if (done(events)) {
            clearTimeout(timer);
            req.destroy();
            resolvePromise(events);
            return;
          }
        }
      });
    });
    req.on('error', (e) => {
      if ((e as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(e);
    });
    req.end();
  });
}

describe('web API (fake agent, real HTTP)', () => {
  let dir: string;
  let env: Env;
  let doc: Doc;
  const c = (): WebClient => new WebClient(env.base);
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ntm-web-'));
    env = await start(dir);
    const r = await c().get('/api/openapi.json');
    assert.equal(r.status, 200);
    doc = r.body as Doc;
  });
  after(async () => {
    await stop(env);
    rmSync(dir, { recursive: true, force: true });
  });

  test('the OpenAPI document is well-formed and covers every route the server has and the page uses', async () => {
    assert.match(doc.openapi, /^3\.1\.\d+$/);
    assert.ok(doc.info.title && doc.info.version);
    const ids = new Set<string>();
    const refs: string[] = [];
    JSON.stringify(doc, (k, v: unknown) => {
      if (k === '$ref') refs.push(String(v));
      return v;
    });
    for (const ref of refs) assert.ok(doc.components.schemas[ref.replace('#/components/schemas/', '')], `unresolved ${ref}`);
    for (const [path, methods] of Object.entries(doc.paths)) {
      assert.ok(path.startsWith('/api/'), path);
      const templ = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!).sort();
      for (const [method, op] of Object.entries(methods)) {
        assert.ok(['get', 'post', 'put', 'delete'].includes(method), method);
        assert.ok(!ids.has(op.operationId), `duplicate ${op.operationId}`);
        ids.add(op.operationId);
        assert.ok(Object.keys(op.responses).length > 0);
        for (const [code, resp] of Object.entries(op.responses)) {
          assert.match(code, /^[1-5]\d\d$/);
          assert.ok(resp.description, `${op.operationId} ${code}: description`);
        }
        const declared = (op.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name).sort();
        assert.deepEqual(declared, templ, `${op.operationId}: path parameters`);
        for (const p of op.parameters ?? []) if (p.in === 'path') assert.equal(p.required, true);
        for (const s of op.security ?? []) for (const name of Object.keys(s as object)) assert.ok(doc.components.securitySchemes[name], name);
      }
    }
    // The server's routes are exactly the document's: each documented operation is routed (not 404/405) …
    const probe = new WebClient(env.base);
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const method of Object.keys(methods)) {
        if (path === '/api/live') continue;
        const url = path.replace('{deviceId}', '1').replace('{phoneId}', PHONE);
        const r = await probe.request(method.toUpperCase(), url);
        assert.notEqual(r.status, 405, `${method} ${path}: ${r.text}`);
        assert.doesNotMatch(r.text, /no API operation/, `${method} ${path} is not routed`);
      }
    }
    // … and what is not documented is not routed.
    expectError(await probe.get('/api/nope'), 404, 'not_found');
    expectError(await probe.request('PATCH', '/api/devices'), 405, 'method_not_allowed');
    // The page calls only documented operations.
    const clientSrc = readFileSync(join(ROOT, 'web-ui/client/api.ts'), 'utf8');
    const used = [...clientSrc.matchAll(/['`](\/api\/[^'`?]*)/g)].map((m) => m[1]!.replace(/\$\{[^}]+\}/g, '{x}'));
    assert.ok(used.length >= 15, `found ${used.length} API paths in the page`);
    const docPaths = Object.keys(doc.paths).map((p) => p.replace(/\{\w+\}/g, '{x}'));
    for (const u of used) assert.ok(docPaths.includes(u), `the page uses ${u}, which is not documented`);
    assert.equal(Object.keys(doc.components.schemas).length, Object.keys(COMPONENTS).length);
  });

  test('the household flow: setup, sign-in, pair, add a phone, grant, status, events, sign-out', async () => {
    const a = c();
    let r = await a.get('/api/session');
    conforms(doc, 'getSession', r);
    assert.deepEqual(r.body, { authenticated: false, setupRequired: true, csrfToken: null, household: null });
    expectError(await a.get('/api/devices'), 401, 'unauthenticated');
    expectError(await a.post('/api/login', { password: PASSWORD }), 409, 'conflict');

    // First start.
    r = await a.post('/api/setup', { setupCode: 'AAAA-BBBB-CCCC', password: PASSWORD });
    expectError(r, 403, 'wrong_setup_code', 'setupCode');
    conforms(doc, 'setup', r);
    expectError(await a.post('/api/setup', { setupCode: CODE, password: 'short' }), 400, 'bad_request', 'password');
    expectError(await a.post('/api/setup', { setupCode: CODE }), 400, 'bad_request', 'password');
    expectError(await a.post('/api/setup', { setupCode: CODE, password: PASSWORD, extra: 1 }), 400, 'bad_request', 'extra');
    expectError(await a.post('/api/setup', { setupCode: CODE, password: PASSWORD, household: '' }), 400, 'bad_request', 'household');
    r = await a.post('/api/setup', { setupCode: CODE.toLowerCase().replace(/-/g, ' '), password: PASSWORD, household: 'Tanaka home' });
    assert.equal(r.status, 201, r.text);
    conforms(doc, 'setup', r);
    assert.equal((r.body as { household: string }).household, 'Tanaka home');
    assert.ok(a.cookie && a.csrf);
    expectError(await c().post('/api/setup', { setupCode: CODE, password: PASSWORD }), 409, 'conflict');

    // A second browser signs in.
    const b = c();
    r = await b.post('/api/login', { password: 'wrong password' });
    expectError(r, 401, 'wrong_password', 'password');
    conforms(doc, 'login', r);
    r = await b.post('/api/login', { password: PASSWORD });
    assert.equal(r.status, 200);
    conforms(doc, 'login', r);
    r = await b.get('/api/session');
    assert.deepEqual({ ...(r.body as object), csrfToken: 'x' }, { authenticated: true, setupRequired: false, csrfToken: 'x', household: 'Tanaka home' });

    // Devices: discovered, paired, by hand.
    env.fake.discover([LAMP]);
    r = await b.get('/api/devices');
    conforms(doc, 'listDevices', r);
    const devices = r.body as { id: number; name: string; paired: boolean }[];
    assert.deepEqual(devices.map((d) => [d.name, d.paired]), [['Living Room Lamp', false]]);
    const lampId = devices[0]!.id;
    expectError(await b.post('/api/devices/abc/pairing', {}), 400, 'bad_request', 'deviceId');
    expectError(await b.post('/api/devices/999/pairing', {}), 404, 'not_found');
    expectError(await b.post(`/api/devices/${lampId}/pairing`, { name: 'x'.repeat(64) }), 400, 'bad_request', 'name');
    r = await b.post(`/api/devices/${lampId}/pairing`);
    assert.equal(r.status, 201, r.text);
    conforms(doc, 'pairDevice', r);
    const lamp = r.body as { id: number; paired: boolean; ntmId: string; virtualV4: string };
    assert.equal(lamp.paired, true);
    assert.match(lamp.ntmId, /^0x[0-9a-f]{40}$/);
    assert.equal(lamp.virtualV4, '198.18.0.2');
    expectError(await b.post(`/api/devices/${lampId}/pairing`), 409, 'conflict');
    expectError(await b.post('/api/devices', { name: 'Hall camera', mac: 'not a mac' }), 400, 'bad_request', 'mac');
    expectError(await b.post('/api/devices', { name: 'Hall camera' }), 400, 'bad_request', 'ipv4');
    r = await b.post('/api/devices', { name: 'Hall camera', kind: 'camera', ipv4: '192.168.1.11' });
    assert.equal(r.status, 201, r.text);
    conforms(doc, 'addDevice', r);
    const cam = r.body as { id: number };

    // A phone.
    expectError(await b.post('/api/enrollments', { name: '' }), 400, 'bad_request', 'name');
    r = await b.post('/api/enrollments', { name: "Anna's phone" });
    assert.equal(r.status, 201, r.text);
    conforms(doc, 'createEnrollment', r);
    const en = r.body as { token: string; link: string; qrSvg: string };
    assert.match(en.token, /^ntm1:[A-Za-z0-9_-]+$/);
    assert.equal(en.link, `ntm://enroll#${en.token}`);
    assert.match(en.qrSvg, /^<svg/);
    expectError(await b.post('/api/enrollments', { name: "anna's phone" }), 409, 'conflict');
    const phone = env.fake.enrollPhone(en.link, PHONE);
    assert.ok(phone);
    assert.equal(env.fake.enrollPhone(en.token), null, 'a token admits one phone');
    r = await b.get('/api/phones');
    conforms(doc, 'listPhones', r);
    assert.deepEqual((r.body as { id: string; name: string }[]).map((p) => [p.id, p.name]), [[PHONE, "Anna's phone"]]);

    // Access.
    expectError(await b.put(`/api/grants/${PHONE}/${lamp.id}`, { ports: [80, 70000] }), 400, 'bad_request', 'ports[1]');
    expectError(await b.put(`/api/grants/${PHONE}/${lamp.id}`, { ports: 'all' }), 400, 'bad_request', 'ports');
    expectError(await b.put(`/api/grants/0x${'00'.repeat(20)}/${lamp.id}`, { ports: [] }), 404, 'not_found');
    expectError(await b.put(`/api/grants/0x12/${lamp.id}`, { ports: [] }), 400, 'bad_request', 'phoneId');
    r = await b.put(`/api/grants/${PHONE}/${lamp.id}`, { ports: [443, 80] });
    assert.equal(r.status, 200, r.text);
    conforms(doc, 'setGrant', r);
    assert.deepEqual(r.body, { phoneId: PHONE, deviceId: lamp.id, ports: [80, 443] });
    r = await b.put(`/api/grants/${PHONE}/${cam.id}`, { ports: [] });
    assert.equal(r.status, 200);
    r = await b.get('/api/grants');
    conforms(doc, 'listGrants', r);
    assert.equal((r.body as unknown[]).length, 2);
    r = await b.delete(`/api/grants/${PHONE}/${cam.id}`);
    assert.equal(r.status, 204);
    conforms(doc, 'revokeGrant', r);
    expectError(await b.delete(`/api/grants/${PHONE}/${cam.id}`), 404, 'not_found');

    // Status and events.
    env.fake.openTunnel({ deviceId: lamp.id, phoneId: PHONE, path: 'hole-punched', rttMs: 18 });
    env.fake.tick(1000);
    r = await b.get('/api/status');
    conforms(doc, 'getStatus', r);
    const st = r.body as { tunnels: { device: string; path: string; txBytes: number }[]; health: { dc: { terminals: number } } };
    assert.deepEqual(st.tunnels.map((t) => [t.device, t.path, t.txBytes]), [['Living Room Lamp', 'hole-punched', 1000]]);
    assert.equal(st.health.dc.terminals, 3);
    // The charts' history: each step holds what the connection carried in it.
    env.fake.sampleTraffic(Date.UTC(2026, 0, 1, 0, 0, 0));
    env.fake.tick(3000);
    env.fake.sampleTraffic(Date.UTC(2026, 0, 1, 0, 0, 5));
    r = await b.get('/api/traffic');
    conforms(doc, 'getTraffic', r);
    const tr = r.body as { stepS: number; points: number; end: string; connections: { device: string; peer: string; connected: boolean; txBytes: number[]; rxBytes: number[] }[] };
    assert.deepEqual([tr.stepS, tr.points, tr.end], [5, 60, '2026-01-01T00:00:05.000Z']);
    assert.deepEqual(tr.connections.map((c) => [c.device, c.peer, c.connected, c.txBytes.slice(-2), c.rxBytes.slice(-2), c.txBytes.length]), [
      ['Living Room Lamp', PHONE, true, [1000, 3000], [2000, 6000], 60],
    ]);
    r = await b.get('/api/events?limit=3');
    conforms(doc, 'listEvents', r);
    assert.equal((r.body as unknown[]).length, 3);
    assert.equal((r.body as { kind: string }[])[0]!.kind, 'tunnel.up');
    expectError(await b.get('/api/events?limit=0'), 400, 'bad_request', 'limit');
    expectError(await b.get('/api/events?limit=1&limit=2'), 400, 'bad_request', 'limit');

    // Household name and password.
    r = await b.put('/api/household', { name: 'Tanaka-ke' });
    conforms(doc, 'setHousehold', r);
    r = await b.get('/api/household');
    conforms(doc, 'getHousehold', r);
    assert.deepEqual(r.body, { name: 'Tanaka-ke' });
    expectError(await b.post('/api/password', { currentPassword: 'nope nope', newPassword: 'another long one' }), 401, 'wrong_password', 'currentPassword');
    expectError(await b.post('/api/password', { currentPassword: PASSWORD, newPassword: 'short' }), 400, 'bad_request', 'newPassword');

    // Removing the phone and unpairing.
    r = await b.delete(`/api/phones/${PHONE}`);
    assert.equal(r.status, 204);
    conforms(doc, 'removePhone', r);
    expectError(await b.delete(`/api/phones/${PHONE}`), 404, 'not_found');
    assert.deepEqual((await b.get('/api/grants')).body, []);
    r = await b.delete(`/api/devices/${lamp.id}/pairing`);
    assert.equal(r.status, 204);
    conforms(doc, 'unpairDevice', r);
    expectError(await b.delete(`/api/devices/${lamp.id}/pairing`), 409, 'conflict');

    // Sign-out ends only that session.
    r = await b.post('/api/logout');
    assert.equal(r.status, 204);
    conforms(doc, 'logout', r);
    assert.match(b.lastSetCookie ?? '', /Max-Age=0/);
    expectError(await b.get('/api/devices', { cookie: true }), 401, 'unauthenticated');
    assert.equal((await a.get('/api/devices')).status, 200, 'the other browser is still signed in');
  });

  test('bad bodies: not JSON, wrong type, too large', async () => {
    const a = c();
    expectError(await a.post('/api/login', undefined, { raw: '{"password":', headers: { 'content-type': 'application/json' } }), 400, 'bad_request', 'body');
    expectError(await a.post('/api/login', undefined, { raw: 'password=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } }), 415, 'unsupported_media_type');
    expectError(await a.post('/api/login', undefined, { raw: Buffer.from([0x7b, 0xff, 0x7d]), headers: { 'content-type': 'application/json' } }), 400, 'bad_request', 'body');
    expectError(await a.post('/api/login', [1, 2]), 400, 'bad_request', 'body');
    expectError(await a.post('/api/login', { password: 12345678 }), 400, 'bad_request', 'password');
    const r = await a.post('/api/login', { password: 'x'.repeat(20_000) });
    expectError(r, 413, 'too_large');
  });

  test('live updates: status at once, then a device appearing, as server-sent events', async () => {
    const a = c();
    await a.post('/api/login', { password: PASSWORD });
    const events = await readLive(
      env.base,
      a.cookie!,
      (ev) => ev.some((e) => e.event === 'changed' && (e.data as { devices: boolean }).devices) && ev.some((e) => e.event === 'event'),
      () => env.fake.discover([LAMP, { ...LAMP, name: 'Printer', kind: 'printer', mac: '02:00:00:00:00:20', ipv4: '192.168.1.20', host: 'printer.local' }]),
    );
    assert.equal(events[0]!.event, 'status');
    assert.equal(validate({ $ref: '#/components/schemas/Status' }, events[0]!.data, COMPONENTS), null);
    assert.equal(events[1]!.event, 'traffic', 'the charts get their history at once too');
    assert.equal(validate({ $ref: '#/components/schemas/Traffic' }, events[1]!.data, COMPONENTS), null);
    const ev = events.find((e) => e.event === 'event')!.data as { kind: string; message: string };
    assert.equal(ev.kind, 'device.discovered');
    assert.match(ev.message, /Printer/);
    // Without a session there is no stream.
    expectError(await c().get('/api/live'), 401, 'unauthenticated');
  });

  test('live updates stop when the session ends (sign-out elsewhere)', async () => {
    const a = c();
    await a.post('/api/login', { password: PASSWORD });
    const ended = await new Promise<number>((resolvePromise, reject) => {
      const req = request(new URL('/api/live', env.base), { headers: { cookie: a.cookie! } }, (res) => {
        let t0 = 0;
        res.once('data', () => {
          t0 = Date.now();
          void a.post('/api/logout');
        });
        res.on('end', () => resolvePromise(Date.now() - t0));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.setTimeout(5000, () => reject(new Error('the stream did not end')));
      req.end();
    });
    assert.ok(ended < 2000, `${ended} ms`);
  });

  test('internal errors: a generic message to the client, the details in the log', async () => {
    const d2 = mkdtempSync(join(tmpdir(), 'ntm-web-'));
    const broken = await start(d2, (fake) => {
      const api = Object.create(fake) as FakeAgent;
      api.health = () => {
        throw new Error('sqlite says: secret internal detail at /var/lib/ntm');
      };
      return api;
    });
    try {
      const a = new WebClient(broken.base);
      await a.post('/api/setup', { setupCode: CODE, password: PASSWORD });
      const r = await a.get('/api/status');
      expectError(r, 500, 'internal');
      assert.doesNotMatch(r.text, /secret|sqlite|\/var\/lib/);
      assert.ok(broken.logs.some((l) => l.includes('secret internal detail')), 'logged');
    } finally {
      await stop(broken);
      rmSync(d2, { recursive: true, force: true });
    }
  });

  test('restart keeps state: a new app over the same database file', async () => {
    const d2 = mkdtempSync(join(tmpdir(), 'ntm-web-'));
    let first: Env | undefined = await start(d2);
    let second: Env | undefined;
    try {
      const a = new WebClient(first.base);
      await a.post('/api/setup', { setupCode: CODE, password: PASSWORD, household: 'Restart home' });
      first.fake.discover([LAMP]);
      const paired = (await a.post('/api/devices/1/pairing')).body as { ntmId: string };
      const cookie = a.cookie;
      await stop(first);
      first = undefined;
      second = await start(d2);
      const b = new WebClient(second.base);
      b.cookie = cookie;
      let r = await b.get('/api/session');
      assert.equal((r.body as { authenticated: boolean }).authenticated, true, 'the session survives');
      r = await b.get('/api/devices');
      assert.equal((r.body as { ntmId: string }[])[0]!.ntmId, paired.ntmId);
      const fresh = new WebClient(second.base);
      expectError(await fresh.post('/api/setup', { setupCode: CODE, password: 'another password' }), 409, 'conflict');
      r = await fresh.post('/api/login', { password: PASSWORD });
      assert.equal(r.status, 200);
      assert.equal((r.body as { household: string }).household, 'Restart home');
    } finally {
      if (first) await stop(first);
      if (second) await stop(second);
      rmSync(d2, { recursive: true, force: true });
    }
  });
});
