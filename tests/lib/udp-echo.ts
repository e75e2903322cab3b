// A UDP echo server for netns tests: answers each datagram with the source address:port it observed (JSON).
// Run inside a namespace: node dist/tests/lib/udp-echo.js [--port 7777] [--bind ADDR]
import { createSocket, type Socket } from 'node:dgram';
import type { EchoReply } from './probe-format.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}

function listen(sock: Socket, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(port, address, () => {
      sock.off('error', reject);
      resolve();
    });
  });
}

async function main(): Promise<void> {
  const port = Number(arg('--port', '7777'));
  const bind = arg('--bind', '');
  let sock: Socket;
  if (bind) {
    sock = createSocket(bind.includes(':') ? 'udp6' : 'udp4');
    await listen(sock, port, bind);
  } else {
    // Dual-stack where the host has IPv6; IPv4-only hosts (IPv6 disabled) fall back to 0.0.0.0.
    sock = createSocket({ type: 'udp6', ipv6Only: false });
    try {
      await listen(sock, port, '::');
    } catch {
      sock.close();
      sock = createSocket('udp4');
      await listen(sock, port, '0.0.0.0');
    }
  }
  let received = 0;
  sock.on('message', (msg, rinfo) => {
    received++;
    const mapped = rinfo.address.startsWith('::ffff:') && rinfo.address.includes('.');
    const reply: EchoReply = {
      observed: {
        address: mapped ? rinfo.address.slice('::ffff:'.length) : rinfo.address,
        port: rinfo.port,
        family: mapped ? 'IPv4' : (rinfo.family as 'IPv4' | 'IPv6'),
      },
      payload: msg.toString('base64'),
      received,
    };
    sock.send(JSON.stringify(reply), rinfo.port, rinfo.address);
  });
  const a = sock.address();
  console.log(JSON.stringify({ listening: { address: a.address, port: a.port } }));
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
