// The README's dashboard screenshot from a real run (issue 14 §3). Two testbeds side by side, as an ISP's fleet:
//   - household: the agent on the vCPE (its own DC and RS, the lamp's and the camera's terminals) and a phone that
//     downloads from the lamp over Wi-Fi, then over LTE behind the carrier's symmetric NAT;
//   - natpair: a stand-alone DC and RS with two terminals behind symmetric NATs, so their tunnel is relayed by the RS;
//     terminal B restarts half way (a renewal), and junk datagrams at the DC are dropped and counted.
// Debian's Prometheus scrapes every role's /metrics where the roles bind it (each namespace's loopback: 9100, 9101,
// 9102), through a forwarder per target (a unix socket crosses namespaces). Then every panel of
// docs/grafana-dashboard.json is evaluated by that Prometheus through its HTTP API (the panels' own PromQL, with
// $job = All and $__rate_interval as Grafana sets it), drawn by scripts/dashboard/render.ts, and headless Chromium
// screenshots the page. Everything it started is removed at the end.
//
//   scripts/dashboard-shot [--seconds 180] [--out docs/grafana-dashboard.png]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { up, type Testbed } from './netns/index.js';
import { expand, rateInterval, renderPage, type Dashboard, type PanelData, type PromSeries, type Variables } from './dashboard/render.js';
import { closeAllBrowsers, launchBrowser } from '../tests/lib/browser.js';
import { NTM, startNatpair, startNtm, waitFor, type Daemon } from '../tests/lib/ntm.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const LAMP_JS = join(ROOT, 'dist/scripts/appliances/lamp.js');
const SCRAPE_S = 5;
const WIDTH = 1200;

const say = (s: string) => process.stdout.write(`[dashboard-shot] ${s}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** In the namespace: a unix socket that leads to 127.0.0.1:port there (a socket file is seen from every namespace). */
const BRIDGE = `const net = require('node:net');
net.createServer((c) => { const u = net.connect(Number(process.argv[2]), '127.0.0.1'); c.pipe(u).pipe(c);
  c.on('error', () => u.destroy()); u.on('error', () => c.destroy()); }).listen(process.argv[1]);`;

/** 127.0.0.1:<returned port> here → a testbed host's loopback `port`, for a scraper outside the testbed. */
async function exposeLoopback(tb: Testbed, host: string, port: number, dir: string, servers: Server[]): Promise<number> {
  const sock = join(dir, `${tb.prefix}-${host}-${port}.sock`);
  tb.spawn(host, [process.execPath, '-e', BRIDGE, sock, String(port)], { stdio: 'ignore' });
  const reachable = () =>
    new Promise<boolean>((ok) => {
      const s = connect(sock);
      s.once('connect', () => (s.destroy(), ok(true)));
      s.once('error', () => ok(false));
    });
  await waitFor(`the bridge to ${host}:${port}`, reachable, 10_000, 100);
  const srv = createServer((c) => {
    const u = connect(sock);
    c.pipe(u).pipe(c);
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
  });
  servers.push(srv);
  await new Promise<void>((ok) => srv.listen(0, '127.0.0.1', ok));
  return (srv.address() as AddressInfo).port;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  const port = (s.address() as AddressInfo).port;
  await new Promise((ok) => s.close(ok));
  return port;
}

interface Target {
  readonly job: string;
  readonly instance: string;
  readonly port: number;
}

/** Debian's Prometheus on 127.0.0.1:port, scraping the targets every SCRAPE_S seconds. */
function startPrometheus(dir: string, port: number, targets: readonly Target[]): ChildProcess {
  const config = join(dir, 'prometheus.yml');
  const lines = ['global:', `  scrape_interval: ${SCRAPE_S}s`, `  evaluation_interval: ${SCRAPE_S}s`, 'scrape_configs:'];
  for (const job of new Set(targets.map((t) => t.job))) {
    lines.push(`  - job_name: ${job}`, '    static_configs:');
    for (const t of targets.filter((x) => x.job === job)) lines.push(`      - targets: ['127.0.0.1:${t.port}']`, `        labels: { instance: '${t.instance}' }`);
  }
  writeFileSync(config, `${lines.join('\n')}\n`);
  return spawn('prometheus', [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: 'ignore' });
}

async function prom<T>(base: string, path: string, params: Record<string, string>): Promise<T> {
  const r = await fetch(`${base}${path}?${new URLSearchParams(params).toString()}`, { signal: AbortSignal.timeout(20_000) });
  const j = (await r.json()) as { status: string; data: T; error?: string };
  if (j.status !== 'success') throw new Error(`Prometheus ${path} ${JSON.stringify(params)}: ${j.error ?? r.status}`);
  return j.data;
}

/** The household's phone downloads from the lamp until `until`, with a refused try at the camera's web port now and then. */
async function householdTraffic(tb: Testbed, lampV4: string, cameraV4: string, until: number): Promise<{ ok: number; bytes: number }> {
  const n = { ok: 0, bytes: 0 };
  for (let i = 0; Date.now() < until; i++) {
    const size = 200_000 + ((i * 7919) % 13) * 150_000;
    const r = await tb.exec('phone', ['curl', '-sS', '-o', '/dev/null', '-w', '%{size_download}', '--max-time', '20', `http://${lampV4}/download?bytes=${size}`], { timeoutMs: 25_000 });
    if (r.code === 0) {
      n.ok++;
      n.bytes += Number(r.stdout);
    }
    // The phone may reach the camera's stream port only: its web port is refused by the agent's policy.
    if (i % 5 === 4) await tb.exec('phone', ['curl', '-sS', '-o', '/dev/null', '--max-time', '2', `http://${cameraV4}/`], { timeoutMs: 5000 });
    await sleep(1000 + (i % 3) * 500);
  }
  return n;
}

/** Terminal A fetches files from B through the relayed tunnel until `until`; now and then a few junk datagrams hit the DC. */
async function natpairTraffic(tb: Testbed, bV4: string, until: number): Promise<{ ok: number; bytes: number }> {
  const n = { ok: 0, bytes: 0 };
  const junk = `const s = require('node:dgram').createSocket('udp4'); let k = 0;
    const send = () => s.send(require('node:crypto').randomBytes(40 + k * 7), 7100, '192.0.2.2', () => (++k < 4 ? send() : s.close())); send();`;
  for (let i = 0; Date.now() < until; i++) {
    const size = 100_000 * (1 + (i % 4));
    const r = await tb.exec('a', ['curl', '-sS', '-o', '/dev/null', '-w', '%{size_download}', '--max-time', '20', `http://${bV4}:8080/download?bytes=${size}`], { timeoutMs: 25_000 });
    if (r.code === 0) {
      n.ok++;
      n.bytes += Number(r.stdout);
    }
    if (i % 4 === 3) await tb.exec('a', [process.execPath, '-e', junk], { timeoutMs: 5000 });
    await sleep(1500 + (i % 3) * 500);
  }
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '180' }, out: { type: 'string', default: join(ROOT, 'docs/grafana-dashboard.png') } } });
  const seconds = Number(values.seconds);
  if (!(seconds >= 30)) throw new Error('--seconds: at least 30');
  const dashboard = JSON.parse(readFileSync(join(ROOT, 'docs/grafana-dashboard.json'), 'utf8')) as Dashboard;
  const dir = mkdtempSync(join(tmpdir(), 'ntm-dashboard-'));
  const beds: Testbed[] = [];
  const daemons: Daemon[] = [];
  const servers: Server[] = [];
  let prometheus: ChildProcess | undefined;
  const cleanup = async () => {
    await closeAllBrowsers().catch(() => undefined);
    prometheus?.kill();
    for (const s of servers) s.close();
    await Promise.all(daemons.map((d) => d.stop()));
    for (const tb of beds) await tb.down();
    rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = () => void cleanup().finally(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const home = await up('household', {});
    beds.push(home);
    const pair = await up('natpair', { nat: { nata: 'symmetric', natb: 'symmetric' } });
    beds.push(pair);
    say(`testbeds ${home.prefix} (household) and ${pair.prefix} (natpair) up`);
    const targets: Target[] = [
      { job: 'agent', instance: 'vcpe-S-0042:9102', port: await exposeLoopback(home, 'vcpe', 9102, dir, servers) },
      { job: 'dc', instance: 'dc-1:9100', port: await exposeLoopback(pair, 'dc', 9100, dir, servers) },
      { job: 'rs', instance: 'rs-1:9101', port: await exposeLoopback(pair, 'rs', 9101, dir, servers) },
    ];
    const promPort = await freePort();
    const base = `http://127.0.0.1:${promPort}`;
    prometheus = startPrometheus(dir, promPort, targets);
    await waitFor('Prometheus to be ready', async () => (await fetch(`${base}/-/ready`)).ok, 30_000, 500);
    say(`Prometheus scrapes ${targets.map((t) => t.instance).join(', ')} every ${SCRAPE_S} s`);
    const from = Math.floor(Date.now() / 1000);
    const aScrape = () => sleep((SCRAPE_S + 1) * 1000);

    // The household: the agent first, scraped idle once, then its devices and the phone.
    const agent = await startNtm(home, 'vcpe', 'agent', ['--no-web'], join(dir, 'agent'), 30_000);
    daemons.push(agent);
    home.spawn('lamp', [process.execPath, LAMP_JS, '--port', '80'], { stdio: 'ignore' });
    await aScrape();
    const lamp = (await agent.call({ cmd: 'pair', name: 'lamp', kind: 'lamp', ip: '192.168.1.10', ipv6: 'fd6e:746d:1::10' })) as { id: number; virtualV4: string };
    const camera = (await agent.call({ cmd: 'pair', name: 'camera', kind: 'camera', ip: '192.168.1.11' })) as { id: number; virtualV4: string };
    const enr = (await agent.call({ cmd: 'enroll', name: 'Phone' })) as { link: string };
    const phoneDir = join(dir, 'phone');
    const en = await home.exec('phone', [process.execPath, NTM, 'enroll', '--data-dir', phoneDir, '--name', 'phone', enr.link], { timeoutMs: 60_000 });
    if (en.code !== 0) throw new Error(`ntm enroll: ${en.stderr}`);
    const phoneId = (JSON.parse(en.stdout.trim().split('\n').pop()!) as { id: string }).id;
    await agent.call({ cmd: 'grant', phoneId, deviceId: lamp.id });
    await agent.call({ cmd: 'grant', phoneId, deviceId: camera.id, ports: '5004' });
    daemons.push(await startNtm(home, 'phone', 'up', [], phoneDir, 45_000));

    // The stand-alone DC and RS, scraped idle once, then the two terminals behind symmetric NATs.
    const run = await startNatpair(pair, join(dir, 'natpair'), daemons, { afterServers: aScrape, terminalReadyMs: 90_000 });
    // B serves downloads (the lamp appliance's /download) to A through the relayed tunnel.
    const server = pair.spawn('b', [process.execPath, LAMP_JS, '--port', '8080', '--name', 'B'], { stdio: 'ignore' });
    await waitFor('the server on B', async () => (await pair.exec('b', ['curl', '-sf', '-o', '/dev/null', 'http://127.0.0.1:8080/'])).code === 0, 60_000, 500);
    const end = Date.now() + seconds * 1000;
    const half = Date.now() + (seconds * 1000) / 2;
    say(`traffic for ${seconds} s: the phone on Wi-Fi, A ↔ B through the RS`);
    const first = await Promise.all([householdTraffic(home, lamp.virtualV4, camera.virtualV4, half), natpairTraffic(pair, String(run.b.ready.v4), half)]);
    say(`  ${JSON.stringify(first)}; the phone moves to LTE; terminal B restarts`);
    await home.move('phone', 'lte');
    await run.b.stop();
    const b = await startNtm(pair, 'b', 'up', ['--dc', `${run.dcId.publicKey}@192.0.2.2:7100`, '--name', 'b', '--dns', ''], run.dirs.b, 90_000);
    daemons.push(b);
    const second = await Promise.all([householdTraffic(home, lamp.virtualV4, camera.virtualV4, end), natpairTraffic(pair, String(b.ready.v4), end)]);
    say(`  ${JSON.stringify(second)}`);
    server.kill();
    // One more scrape after the last transfer, so the last rates are in.
    await aScrape();
    const to = Math.floor(Date.now() / 1000);

    const vars: Variables = { job: '.*', rateIntervalS: rateInterval(SCRAPE_S, SCRAPE_S) };
    const data = new Map<number, PromSeries[][]>();
    for (const p of dashboard.panels) {
      const results: PromSeries[][] = [];
      for (const t of p.targets ?? []) {
        const query = expand(t.expr, vars);
        const r =
          p.type === 'stat'
            ? await prom<{ result: PromSeries[] }>(base, '/api/v1/query', { query, time: String(to) })
            : await prom<{ result: PromSeries[] }>(base, '/api/v1/query_range', { query, start: String(from), end: String(to), step: `${SCRAPE_S}s` });
        results.push(r.result);
      }
      data.set(p.id, results);
    }
    const version = (await prom<{ version: string }>(base, '/api/v1/status/buildinfo', {})).version;
    const caption =
      `A real ${Math.round((to - from) / 60)}-minute run on the testbeds (scripts/dashboard-shot): a household agent with a phone downloading over Wi-Fi, ` +
      `then LTE; a DC and an RS relaying two terminals behind symmetric NATs. Scraped and queried by Prometheus ${version}; ` +
      `the panels' own PromQL, drawn by scripts/dashboard/render.ts in place of Grafana.`;
    const html = renderPage(dashboard, data as PanelData, { width: WIDTH, range: { from, to }, caption });
    const browser = await launchBrowser('http://localhost');
    const page = await browser.newPage({ width: WIDTH, height: 900 });
    await page.setContent(html);
    await page.screenshot({ path: values.out, fullPage: true });
    say(`wrote ${values.out}`);
  } finally {
    await cleanup();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`dashboard-shot: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
