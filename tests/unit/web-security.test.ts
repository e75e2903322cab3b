// The web server's security as an ISP would ship it, tested over real HTTP(S) on loopback: Host check (DNS
// rebinding), CSRF and same-origin checks, the sign-in rate limit, cookie flags (plain and TLS), 401 for every
// operation without a session, response headers, body limits, and the cost of the password hash.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { FakeAgent } from '../../agent/src/agent/fake-agent.js';
import { HouseholdStore } from '../../agent/src/agent/household-store.js';
import { silentLogger } from '../../agent/src/util/log.js';
import { createWebApp, type WebApp, type WebAppOptions } from '../../web-ui/server/app.js';
import { clientKey, hashPassword, LoginLimiter, SCRYPT, verifyPassword } from '../../web-ui/server/auth.js';
import { RateLimitedError, SocketInUseError } from '../../web-ui/server/errors.js';
import { hostName } from '../../web-ui/server/security.js';
import { loadOrCreateSetupCode } from '../../web-ui/server/setup-code.js';
import { WebClient, type WebResponse } from '../../web-ui/server/testing/client.js';

const CODE = 'K7QM-2XPA-9RWD';
const PASSWORD = 'correct horse battery';

interface Env {
  store: HouseholdStore;
  fake: FakeAgent;
  app: WebApp;
  port: number;
  base: string;
  clock: { now: number };
}

async function start(dir: string, name: string, over: Partial<WebAppOptions> = {}, listen = '127.0.0.1:0'): Promise<Env> {
  const clock = { now: Date.now() };
  const now = (): number => clock.now;
  const store = HouseholdStore.open(join(dir, `${name}.db`), { now });
  const fake = new FakeAgent({ store, now });
  const app = createWebApp({
    api: fake,
    store,
    setupCode: CODE,
    log: silentLogger,
    now,
    monotonic: now,
    allowedHosts: ['home.example', 'agent.lan.'],
    interfaces: () => ({ br0: [{ address: '192.168.1.1', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: '192.168.1.1/24' }] }),
    ...over,
  });
  const { port } = await app.listen(listen);
  const scheme = over.tls ? 'https' : 'http';
  return { store, fake, app, port, base: `${scheme}://127.0.0.1:${port}`, clock };
}

async function stop(e: Env): Promise<void> {
  await e.app.close();
  e.store.close();
}

function expectError(r: WebResponse, status: number, code: string): void {
  assert.equal(r.status, status, r.text);
  assert.equal((r.body as { error: string }).error, code, r.text);
  assert.ok((r.body as { message: string }).message.length > 3);
}

function cookieAttrs(setCookie: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of setCookie.split(';').slice(1)) {
    const [k, v] = part.trim().split('=');
    m.set(k!.toLowerCase(), v ?? '');
  }
  return m;
}

describe('web security', () => {
  let dir: string;
  let env: Env;
  let owner: WebClient;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ntm-websec-'));
    env = await start(dir, 'main', {}, '[::]:0');
    owner = new WebClient(env.base);
    const r = await owner.post('/api/setup', { setupCode: CODE, password: PASSWORD });
    assert.equal(r.status, 201, r.text);
  });
  after(async () => {
    await stop(env);
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    // Each test starts with a clean slate of failed sign-ins (a minute later).
    env.clock.now += 61_000;
  });

  test('Host header: the agent\'s addresses, localhost and configured names pass; others get 421', async () => {
    const port = env.port;
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'LOCALHOST', `[::1]:${port}`, '192.168.1.1', `home.example:${port}`, 'agent.lan', 'agent.lan.']) {
      const r = await new WebClient(env.base, { host }).get('/api/session');
      assert.equal(r.status, 200, `${host}: ${r.text}`);
    }
    for (const host of ['evil.example', `evil.example:${port}`, '192.168.1.1.evil.example', '10.0.0.1', 'home.example.evil', '[::2]', 'a b', 'localhost:80:80']) {
      const c = new WebClient(env.base, { host });
      c.cookie = owner.cookie;
      expectError(await c.get('/api/devices'), 421, 'misdirected');
      expectError(await c.get('/api/session'), 421, 'misdirected');
      assert.equal((await c.get('/')).status, 421, 'the page too');
      expectError(await c.post('/api/login', { password: PASSWORD }), 421, 'misdirected');
    }
    assert.equal(hostName('[FD00::1]:8080'), 'fd00::1');
    assert.equal(hostName('Agent.LAN.:80'), 'agent.lan');
    assert.equal(hostName('fd00::1'), null, 'IPv6 needs brackets');
    assert.equal(hostName(undefined), null);
  });

  test('HTTP/1.0 without a Host header is refused too', async () => {
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const sock = connect(env.port, '127.0.0.1', () => sock.write('GET /api/session HTTP/1.0\r\n\r\n'));
      let data = '';
      sock.on('data', (d: Buffer) => (data += d.toString()));
      sock.on('end', () => resolve({ status: Number(data.split(' ')[1]), body: data }));
      sock.on('error', reject);
    });
    assert.ok([400, 421].includes(res.status), res.body);
  });

  test('CSRF: a state-changing call without the session\'s token is refused with 403', async () => {
    const paths: [string, string, unknown][] = [
      ['POST', '/api/enrollments', { name: 'Mallory' }],
      ['PUT', '/api/household', { name: 'pwned' }],
      ['DELETE', `/api/phones/0x${'00'.repeat(20)}`, undefined],
      ['POST', '/api/logout', undefined],
    ];
    for (const [method, path, json] of paths) {
      expectError(await owner.request(method, path, { json, csrf: false }), 403, 'csrf');
      expectError(await owner.request(method, path, { json, csrf: false, headers: { 'x-csrf-token': 'guess' } }), 403, 'csrf');
      expectError(await owner.request(method, path, { json, csrf: false, headers: { 'x-csrf-token': '' } }), 403, 'csrf');
    }
    assert.equal((await owner.get('/api/household')).text, JSON.stringify({ name: 'Home' }), 'nothing changed');
    assert.equal((await owner.put('/api/household', { name: 'Home' })).status, 200, 'with the token it works');
    // Another site's page, even with the token somehow known, is refused by Origin / Sec-Fetch-Site.
    expectError(await owner.put('/api/household', { name: 'x' }, { headers: { origin: 'http://evil.example' } }), 403, 'cross_origin');
    expectError(await owner.put('/api/household', { name: 'x' }, { headers: { 'sec-fetch-site': 'cross-site' } }), 403, 'cross_origin');
    expectError(await new WebClient(env.base).post('/api/login', { password: PASSWORD }, { headers: { origin: 'http://evil.example' } }), 403, 'cross_origin');
    assert.equal((await owner.put('/api/household', { name: 'Home' }, { headers: { origin: env.base, 'sec-fetch-site': 'same-origin' } })).status, 200);
  });

  test('rate limit: the 11th wrong password within a minute from one client gets 429, others are not affected', async () => {
    const mallory = new WebClient(env.base);
    for (let i = 1; i <= 10; i++) expectError(await mallory.post('/api/login', { password: `guess number ${i}` }), 401, 'wrong_password');
    const r = await mallory.post('/api/login', { password: 'guess number 11' });
    expectError(r, 429, 'rate_limited');
    assert.ok(Number(r.headers['retry-after']) >= 1 && Number(r.headers['retry-after']) <= 60, String(r.headers['retry-after']));
    // Even the right password is refused now: the limit is checked before the password.
    expectError(await mallory.post('/api/login', { password: PASSWORD }), 429, 'rate_limited');
    // Another client (127.0.0.2, a different IPv4 address) signs in fine.
    assert.equal((await mallory.post('/api/login', { password: PASSWORD }, { localAddress: '127.0.0.2' })).status, 200);
    // IPv6 clients are counted per /64: ::1 is its own client here.
    const v6 = new WebClient(`http://[::1]:${env.port}`);
    assert.equal((await v6.post('/api/login', { password: 'wrong wrong' })).status, 401);
    // A minute later the first client may try again.
    env.clock.now += 60_001;
    assert.equal((await mallory.post('/api/login', { password: PASSWORD })).status, 200);
  });

  test('Host header: a page served on one address does not answer to the other interface addresses (the WAN\'s)', async () => {
    const d = mkdtempSync(join(tmpdir(), 'ntm-web-host-'));
    const e = await start(d, 'host', {}, '127.0.0.1:0');
    try {
      assert.equal((await new WebClient(e.base, { host: `127.0.0.1:${e.port}` }).get('/api/session')).status, 200);
      expectError(await new WebClient(e.base, { host: '192.168.1.1' }).get('/api/session'), 421, 'misdirected');
    } finally {
      await stop(e);
      rmSync(d, { recursive: true, force: true });
    }
  });

  test('rate limit: many sources failing do not lock out another one (no global limit)', async () => {
    for (let s = 0; s < 12; s++) {
      const c = new WebClient(env.base);
      for (let i = 0; i < 10; i++) expectError(await c.post('/api/login', { password: `spray ${i}` }, { localAddress: `127.0.1.${s + 1}` }), 401, 'wrong_password');
    }
    assert.equal((await new WebClient(env.base).post('/api/login', { password: PASSWORD }, { localAddress: '127.0.2.1' })).status, 200);
  });

  test('rate limit: parallel guesses cannot slip past the limit', async () => {
    const mallory = new WebClient(env.base);
    const results = await Promise.all(Array.from({ length: 25 }, (_, i) => mallory.post('/api/login', { password: `parallel ${i}` }, { localAddress: '127.0.0.3' })));
    const counts = { 401: 0, 429: 0 } as Record<number, number>;
    for (const r of results) counts[r.status] = (counts[r.status] ?? 0) + 1;
    assert.deepEqual(counts, { 401: 10, 429: 15 });
  });

  test('cookie: HttpOnly, SameSite=Strict, Path=/, no Secure over plain HTTP; sessions end on sign-out', async () => {
    const c = new WebClient(env.base);
    await c.post('/api/login', { password: PASSWORD }, { localAddress: '127.0.0.4' });
    const set = c.lastSetCookie!;
    assert.match(set, /^ntm_session=[A-Za-z0-9_-]{43};/);
    const attrs = cookieAttrs(set);
    assert.ok(attrs.has('httponly'));
    assert.equal(attrs.get('samesite'), 'Strict');
    assert.equal(attrs.get('path'), '/');
    assert.ok(!attrs.has('secure'));
    assert.ok(!attrs.has('domain'));
    const cookie = c.cookie;
    await c.post('/api/logout');
    const again = new WebClient(env.base);
    again.cookie = cookie;
    expectError(await again.get('/api/devices'), 401, 'unauthenticated');
  });

  test('cookie over TLS: Secure and the __Host- prefix; HSTS sent', async () => {
    const d = mkdtempSync(join(tmpdir(), 'ntm-tls-'));
    const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(d, 'key.pem'), '-out', join(d, 'cert.pem'), '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' });
    if (gen.status !== 0) {
      rmSync(d, { recursive: true, force: true });
      assert.fail(`openssl cannot make a test certificate (scripts/setup installs openssl): ${gen.stderr}`);
    }
    const cert = readFileSync(join(d, 'cert.pem'));
    const tls = await start(d, 'tls', { tls: { key: readFileSync(join(d, 'key.pem')), cert } });
    try {
      const c = new WebClient(tls.base, { ca: cert });
      const r = await c.post('/api/setup', { setupCode: CODE, password: PASSWORD });
      assert.equal(r.status, 201, r.text);
      assert.match(c.lastSetCookie!, /^__Host-ntm_session=/);
      const attrs = cookieAttrs(c.lastSetCookie!);
      assert.ok(attrs.has('secure') && attrs.has('httponly') && attrs.get('samesite') === 'Strict' && attrs.get('path') === '/');
      assert.match(String(r.headers['strict-transport-security']), /max-age=\d+/);
      assert.equal((await c.get('/api/devices')).status, 200, 'the __Host- cookie is read back');
    } finally {
      await stop(tls);
      rmSync(d, { recursive: true, force: true });
    }
  });

  test('without a session every session operation answers 401 with a JSON message', async () => {
    const doc = (await new WebClient(env.base).get('/api/openapi.json')).body as { paths: Record<string, Record<string, { security: unknown[] }>> };
    let n = 0;
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(methods)) {
        if (op.security.length === 0) continue;
        const url = path.replace('{deviceId}', '1').replace('{phoneId}', `0x${'00'.repeat(20)}`);
        const anon = new WebClient(env.base);
        const r = await anon.request(method.toUpperCase(), url, method === 'get' || method === 'delete' ? {} : { json: {} });
        expectError(r, 401, 'unauthenticated');
        const bogus = new WebClient(env.base);
        bogus.cookie = 'ntm_session=forged-session-id';
        expectError(await bogus.request(method.toUpperCase(), url, method === 'get' || method === 'delete' ? {} : { json: {} }), 401, 'unauthenticated');
        n++;
      }
    }
    assert.ok(n >= 17, `${n} operations`);
  });

  test('security headers on the page and the API', async () => {
    for (const path of ['/', '/app.js', '/api/session', '/api/nope']) {
      const r = await new WebClient(env.base).get(path);
      const csp = String(r.headers['content-security-policy']);
      assert.match(csp, /default-src 'none'/, path);
      assert.match(csp, /script-src 'self'(;|$)/, path);
      assert.match(csp, /frame-ancestors 'none'/, path);
      assert.equal(r.headers['x-content-type-options'], 'nosniff');
      assert.equal(r.headers['x-frame-options'], 'DENY');
      assert.equal(r.headers['referrer-policy'], 'no-referrer');
      if (path.startsWith('/api/')) assert.equal(r.headers['cache-control'], 'no-store');
    }
    const page = await new WebClient(env.base).get('/');
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-type']), /text\/html/);
    assert.doesNotMatch(page.text, /<script>|https?:\/\//, 'no inline script, nothing from the Internet');
    assert.equal((await new WebClient(env.base).get('/../../etc/passwd')).status, 404);
    assert.equal((await new WebClient(env.base).get('/app.js.map')).status, 404);
  });

  test('a body larger than the limit is refused while streaming (chunked, no length)', async () => {
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(`${env.base}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (r) => {
        let body = '';
        r.on('data', (d: Buffer) => (body += d.toString()));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
      });
      req.on('error', (e) => ((e as NodeJS.ErrnoException).code === 'ECONNRESET' || (e as NodeJS.ErrnoException).code === 'EPIPE' ? resolve({ status: 413, body: 'reset' }) : reject(e)));
      req.write('{"password":"');
      for (let i = 0; i < 40; i++) req.write('x'.repeat(1000));
      req.end('"}');
    });
    assert.equal(res.status, 413, res.body);
  });

  test('setup code: wrong codes count towards the limit; the code file is made once and kept', async () => {
    const d = mkdtempSync(join(tmpdir(), 'ntm-setup-'));
    const fresh = await start(d, 'fresh');
    try {
      const c = new WebClient(fresh.base);
      for (let i = 0; i < 10; i++) expectError(await c.post('/api/setup', { setupCode: `WRONG-${i}`, password: PASSWORD }), 403, 'wrong_setup_code');
      expectError(await c.post('/api/setup', { setupCode: CODE, password: PASSWORD }), 429, 'rate_limited');
      const path = join(d, 'sub', 'setup-code');
      const code = loadOrCreateSetupCode(path);
      assert.match(code, /^[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}$/);
      assert.equal(loadOrCreateSetupCode(path), code);
      assert.equal(spawnSync('stat', ['-c', '%a', path], { encoding: 'utf8' }).stdout.trim(), '600');
    } finally {
      await stop(fresh);
      rmSync(d, { recursive: true, force: true });
    }
  });

  test('passwords: scrypt N=2^15 with a per-user salt; measured cost', async () => {
    const t0 = performance.now();
    const h1 = await hashPassword(PASSWORD);
    const ms = performance.now() - t0;
    const h2 = await hashPassword(PASSWORD);
    console.log(`# scrypt N=2^${SCRYPT.logN} r=${SCRYPT.r} p=${SCRYPT.p}: ${ms.toFixed(0)} ms per hash`);
    assert.ok(SCRYPT.logN >= 15);
    assert.match(h1, /^scrypt\$15\$8\$1\$[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}$/);
    assert.notEqual(h1, h2, 'a fresh salt each time');
    assert.equal(await verifyPassword(PASSWORD, h1), true);
    assert.equal(await verifyPassword(PASSWORD + ' ', h1), false);
    assert.equal(await verifyPassword(PASSWORD, 'garbage'), false);
    assert.equal(await verifyPassword(PASSWORD, 'scrypt$30$8$1$AAAA$AAAA'), false, 'absurd parameters are not run');
    assert.equal(env.store.ownerPasswordHash()!.startsWith('scrypt$15$'), true, 'what the store keeps');
  });

  test('changing the password signs out the other browsers', async () => {
    const a = new WebClient(env.base);
    const b = new WebClient(env.base);
    await a.post('/api/login', { password: PASSWORD }, { localAddress: '127.0.0.5' });
    await b.post('/api/login', { password: PASSWORD }, { localAddress: '127.0.0.5' });
    assert.equal((await a.post('/api/password', { currentPassword: PASSWORD, newPassword: 'a new long password' })).status, 204);
    assert.equal((await a.get('/api/devices')).status, 200);
    expectError(await b.get('/api/devices'), 401, 'unauthenticated');
    assert.equal((await a.post('/api/password', { currentPassword: 'a new long password', newPassword: PASSWORD })).status, 204);
    owner = a;
  });

  test('also serves on a unix socket (for a local forwarder), with the same Host check', async () => {
    const sock = join(dir, 'web.sock');
    await env.app.listenUnix(sock);
    await assert.rejects(env.app.listenUnix(sock), SocketInUseError, 'a live socket is not taken over');
    const get = (host: string): Promise<{ status: number; body: string }> =>
      new Promise((resolvePromise, reject) => {
        const req = request({ socketPath: sock, path: '/api/session', headers: { host } }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.end();
      });
    const ok = await get('localhost:8080');
    assert.equal(ok.status, 200, ok.body);
    assert.equal(JSON.parse(ok.body).setupRequired, false);
    assert.equal((await get('evil.example')).status, 421);
    assert.equal(spawnSync('stat', ['-c', '%a', sock], { encoding: 'utf8' }).stdout.trim(), '660');
  });

  test('rate-limit keys: IPv4 address, IPv6 /64, unix socket', () => {
    assert.equal(clientKey('192.168.1.20'), '192.168.1.20');
    assert.equal(clientKey('::ffff:192.168.1.20'), '192.168.1.20');
    assert.equal(clientKey('2001:db8:1:2:aaaa:bbbb:cccc:dddd'), '2001:db8:1:2::/64');
    assert.equal(clientKey('2001:db8:1:2::99'), '2001:db8:1:2::/64');
    assert.equal(clientKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.equal(clientKey(undefined), 'local');
  });

  test('rate limit: failures stamped while the clock was 20 years ahead expire a minute after the clock is put right', () => {
    const dir = mkdtempSync(join(tmpdir(), 'limiter-'));
    const real = Date.UTC(2026, 11, 5);
    const wrong = Date.UTC(2046, 11, 5);
    try {
      const store = HouseholdStore.open(join(dir, 'hh.db'), { now: () => wrong });
      // A boot with the clock in 2046: ten wrong passwords.
      let mono = 0;
      const before = new LoginLimiter(store, () => wrong, undefined, () => mono);
      for (let i = 0; i < 10; i++) before.attempt('192.168.1.20');
      assert.throws(() => before.check('192.168.1.20'), RateLimitedError);
      // The next boot has the right time: refused for at most the window, then allowed.
      mono = 0;
      const after = new LoginLimiter(store, () => real, undefined, () => mono);
      assert.throws(
        () => after.check('192.168.1.20'),
        (e: unknown) => e instanceof RateLimitedError && e.retryAfterS >= 1 && e.retryAfterS <= 60,
      );
      mono = 60_001;
      after.check('192.168.1.20');
      // The wall clock stepped back while running changes nothing: the limiter runs on the monotonic clock.
      let wall = real;
      mono = 0;
      const running = new LoginLimiter(store, () => wall, undefined, () => mono);
      for (let i = 0; i < 10; i++) running.attempt('192.168.1.21');
      wall -= 3600_000;
      mono = 30_000;
      assert.throws(() => running.check('192.168.1.21'), (e: unknown) => e instanceof RateLimitedError && e.retryAfterS <= 30);
      mono = 60_001;
      running.check('192.168.1.21');
      store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
