// Test support: the hosts at both ends of the netns rewrite and firewall tests, talking through node:dgram/node:net.
//
//   node peer.js serve PORT                  UDP echo "<client address>|<message>" on every local address and an
//                                            HTTP/1.0 server on [::]:PORT (both families); prints "ready"
//   node peer.js udp HOST PORT MESSAGE [FROM]   one request (retried) from address FROM (default: any), prints
//                                               {"from", "reply"} or {"timeout": true} after 3 s
//   node peer.js udp-refused HOST PORT [FROM]   connected socket; prints {"refused": bool, "code"} (ICMP unreachable)
//   node peer.js http HOST PORT BYTES        POST of BYTES bytes, prints {"remote", "status", "client", "echoOk", …}
import dgram from 'node:dgram';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import { canonicalIp, ipFamily } from '../../../protocol/ip.js';

const [cmd = '', host = '', portText = '', arg = '', from = ''] = process.argv.slice(2);
const port = Number(portText);
const out = (o: unknown): void => console.log(JSON.stringify(o));

/** Deterministic body bytes, so both ends can check what crossed. */
function body(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + (i >> 8)) & 0xff;
  return b;
}

function serve(listenPort: number): void {
  // One UDP socket per local address: a wildcard socket would answer from the primary address, not the one asked.
  for (const list of Object.values(networkInterfaces())) {
    for (const i of list ?? []) {
      if (i.address.startsWith('fe80')) continue;
      const udp = dgram.createSocket(i.family === 'IPv6' ? 'udp6' : 'udp4');
      udp.on('message', (m, r) => udp.send(`${canonicalIp(r.address)}|${m.toString()}`, r.port, r.address));
      udp.bind(listenPort, i.address);
    }
  }
  const tcp = net.createServer((s) => {
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      const all = Buffer.concat(chunks);
      const head = all.indexOf('\r\n\r\n');
      if (head < 0) return;
      const length = Number(/content-length: *(\d+)/i.exec(all.subarray(0, head).toString())?.[1] ?? 0);
      if (all.length < head + 4 + length) return;
      const content = all.subarray(head + 4, head + 4 + length);
      const sha = createHash('sha256').update(content).digest('hex');
      s.write(`HTTP/1.0 200 OK\r\nX-Client: ${canonicalIp(s.remoteAddress ?? '')}\r\nX-Sha256: ${sha}\r\nContent-Length: ${content.length}\r\n\r\n`);
      s.end(content);
    });
    s.on('error', () => {});
  });
  tcp.listen({ port: listenPort, host: '::', ipv6Only: false }, () => console.log('ready'));
}

function udpRequest(): void {
  const sock = dgram.createSocket(ipFamily(host) === 6 ? 'udp6' : 'udp4');
  let tries = 0;
  const send = (): void => {
    if (tries++ === 5) {
      out({ timeout: true });
      process.exit(0);
    }
    sock.send(arg, port, host);
  };
  sock.on('message', (m, r) => {
    out({ from: canonicalIp(r.address), reply: m.toString() });
    process.exit(0);
  });
  sock.on('error', (e) => {
    out({ error: e.message });
    process.exit(0);
  });
  sock.bind(0, from || undefined, () => {
    send();
    setInterval(send, 600);
  });
}

function udpRefused(): void {
  const sock = dgram.createSocket(ipFamily(host) === 6 ? 'udp6' : 'udp4');
  sock.on('error', (e: NodeJS.ErrnoException) => {
    out({ refused: e.code === 'ECONNREFUSED', code: e.code });
    process.exit(0);
  });
  sock.on('message', () => {});
  // Bound explicitly so the source address is FROM when given.
  sock.bind(0, arg || undefined, () => sock.connect(port, host, () => {
    let tries = 0;
    const send = (): void => {
      if (tries++ === 5) {
        out({ refused: false, code: 'timeout' });
        process.exit(0);
      }
      sock.send('knock');
    };
    send();
    setInterval(send, 600);
  }));
}

function http(): void {
  const content = body(Number(arg));
  const s = net.connect({ host, port });
  const chunks: Buffer[] = [];
  s.setTimeout(15000, () => {
    out({ error: 'timeout' });
    process.exit(0);
  });
  s.on('connect', () => {
    s.write(`POST / HTTP/1.0\r\nContent-Length: ${content.length}\r\n\r\n`);
    s.write(content);
  });
  s.on('data', (d: Buffer) => chunks.push(d));
  s.on('error', (e) => {
    out({ error: e.message });
    process.exit(0);
  });
  s.on('end', () => {
    const all = Buffer.concat(chunks);
    const head = all.indexOf('\r\n\r\n');
    const headers = all.subarray(0, head).toString();
    const echoed = all.subarray(head + 4);
    out({
      remote: canonicalIp(s.remoteAddress ?? ''),
      status: /^HTTP\/1\.0 (\d+)/.exec(headers)?.[1],
      client: /x-client: *(\S+)/i.exec(headers)?.[1],
      shaOk: /x-sha256: *(\S+)/i.exec(headers)?.[1] === createHash('sha256').update(content).digest('hex'),
      echoOk: echoed.equals(content),
      bytes: echoed.length,
    });
    process.exit(0);
  });
}

if (cmd === 'serve') serve(Number(host));
else if (cmd === 'udp') udpRequest();
else if (cmd === 'udp-refused') udpRefused();
else if (cmd === 'http') http();
else {
  console.error(`unknown command ${cmd}`);
  process.exit(2);
}
