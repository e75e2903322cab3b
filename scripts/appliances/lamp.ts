// A simulated smart lamp for the household testbed: a small HTTP API on its LAN address (GET / is its page,
// GET/PUT /api/state switches it), announced over mDNS (_http._tcp) like real appliances. It knows nothing of
// NTMobile; every request is logged as one JSON line (who asked, from which address) so tests can read its log.
import http from 'node:http';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';

interface Args {
  port: number;
  name: string;
  mdns: boolean;
  /** The mDNS host name (".local" added); testbed hosts share one UTS namespace, so two announcers need two names. */
  host: string;
  kind: string;
}

function args(argv: string[]): Args {
  const a: Args = { port: 80, name: 'Living Room Lamp', mdns: false, host: hostname(), kind: 'lamp' };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--port') a.port = Number(argv[++i]);
    else if (argv[i] === '--name') a.name = argv[++i] ?? a.name;
    else if (argv[i] === '--mdns') a.mdns = true;
    else if (argv[i] === '--host') a.host = argv[++i] ?? a.host;
    else if (argv[i] === '--kind') a.kind = argv[++i] ?? a.kind;
  }
  return a;
}

const a = args(process.argv.slice(2));
let on = false;
const log = (o: Record<string, unknown>) => process.stdout.write(JSON.stringify({ t: new Date().toISOString(), ...o }) + '\n');

const server = http.createServer((req, res) => {
  log({ event: 'request', method: req.method, url: req.url, from: req.socket.remoteAddress?.replace(/^::ffff:/, ''), userAgent: req.headers['user-agent'] ?? '' });
  if (req.url === '/api/state' && req.method === 'PUT') {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      on = /on|true|1/.test(body);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ on }));
    });
    return;
  }
  if (req.url === '/api/state') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ on }));
    return;
  }
  const dl = /^\/download\?bytes=(\d+)$/.exec(req.url ?? '');
  if (dl) {
    // A firmware-sized download for transfer tests: deterministic bytes, so the receiver can check them.
    const total = Math.min(Number(dl[1]), 1 << 30);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
    const chunk = Buffer.alloc(64 * 1024);
    for (let i = 0; i < chunk.length; i++) chunk[i] = i & 0xff;
    let sent = 0;
    const pump = (): void => {
      while (sent < total) {
        const n = Math.min(chunk.length, total - sent);
        sent += n;
        if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
    return;
  }
  if (req.url === '/' || req.url === '/index.html') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(`<!doctype html><title>${a.name}</title><h1>${a.name}</h1><p>The lamp is ${on ? 'on' : 'off'}.</p>\n`);
    return;
  }
  res.writeHead(404).end('not found\n');
});
server.listen(a.port, '::', () => log({ event: 'listening', port: a.port, name: a.name }));

if (a.mdns) {
  // multicast-dns must bind 0.0.0.0 (not the interface address) and use non-zero TTLs, or Avahi ignores it.
  const mdnsFactory = createRequire(import.meta.url)('multicast-dns') as (o?: object) => {
    on(ev: 'query', cb: (q: { questions: Array<{ name: string; type: string }> }) => void): void;
    respond(r: object): void;
    destroy(): void;
  };
  const m = mdnsFactory({ interface: '0.0.0.0' });
  const host = `${a.host}.local`;
  const instance = `${a.name}._http._tcp.local`;
  const answers = (addr: string) => [
    { name: '_http._tcp.local', type: 'PTR', ttl: 120, data: instance },
    { name: '_services._dns-sd._udp.local', type: 'PTR', ttl: 120, data: '_http._tcp.local' },
    { name: instance, type: 'SRV', ttl: 120, data: { port: a.port, target: host } },
    { name: instance, type: 'TXT', ttl: 120, data: [`kind=${a.kind}`, 'path=/'] },
    { name: host, type: 'A', ttl: 120, data: addr },
  ];
  const addr = process.env.LAMP_ADDR ?? '192.168.1.10';
  const announce = () => m.respond({ answers: answers(addr) });
  m.on('query', (q) => {
    if (q.questions.some((x) => x.name === '_http._tcp.local' || x.name === instance || x.name === host || x.name === '_services._dns-sd._udp.local')) announce();
  });
  announce();
  setInterval(announce, 5000).unref();
}
