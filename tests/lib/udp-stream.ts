// A constant-rate UDP stream with sequence numbers, for tests and soaks that count every lost packet: run one at each
// end of a tunnel (inside its namespace); each sends to the other and counts what it receives.
//   node dist/tests/lib/udp-stream.js --port P [--peer ADDR:PORT] [--rate PPS] [--seconds S] [--grace-ms 1000]
//     [--size BYTES] [--report-every-s N] [--wait-for-go]
// It listens on P, sends --rate datagrams a second to --peer for --seconds (rate 0: receive only), waits --grace-ms for
// the last ones in flight, and prints one JSON line: { sent, received, unique, duplicates, fromPeers, maxGapMs }.
// Datagram: stream id (8 bytes, random per run) ‖ sequence (4) ‖ padding. `unique` counts distinct sequences per
// stream, so a receiver can tell the sender's losses from duplicates. With --report-every-s it also prints interim
// lines { at_s, sent, unique } (soak benchmarks). --wait-for-go holds the sending until a line arrives on stdin, so
// that both ends of a test listen before either sends (a datagram to a port nobody listens on would count as lost).
import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { isIPv6 } from 'node:net';

interface Options {
  port: number;
  peer: { address: string; port: number } | undefined;
  rate: number;
  seconds: number;
  graceMs: number;
  size: number;
  reportEveryS: number;
  waitForGo: boolean;
}

function parse(args: readonly string[]): Options {
  let argv = args;
  const o: Options = { port: 0, peer: undefined, rate: 0, seconds: 10, graceMs: 1000, size: 200, reportEveryS: 0, waitForGo: false };
  if (argv.includes('--wait-for-go')) {
    o.waitForGo = true;
    argv = argv.filter((a) => a !== '--wait-for-go');
  }
  for (let i = 0; i < argv.length; i += 2) {
    const v = argv[i + 1] ?? '';
    switch (argv[i]) {
      case '--port':
        o.port = Number(v);
        break;
      case '--peer': {
        const m = /^\[([^\]]+)\]:(\d+)$/.exec(v) ?? /^([^:]+):(\d+)$/.exec(v);
        if (!m?.[1] || !m[2]) throw new Error(`bad --peer "${v}" (want ADDR:PORT or [V6ADDR]:PORT)`);
        o.peer = { address: m[1], port: Number(m[2]) };
        break;
      }
      case '--rate':
        o.rate = Number(v);
        break;
      case '--seconds':
        o.seconds = Number(v);
        break;
      case '--grace-ms':
        o.graceMs = Number(v);
        break;
      case '--size':
        o.size = Math.max(12, Number(v));
        break;
      case '--report-every-s':
        o.reportEveryS = Number(v);
        break;
      default:
        throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (o.rate > 0 && !o.peer) throw new Error('--rate needs --peer');
  return o;
}

function main(): void {
  const o = parse(process.argv.slice(2));
  // A large receive buffer (the usual rmem_max): a receiver descheduled on a busy machine must not drop what the
  // tunnel delivered, or the count would blame the tunnel for the host's load.
  const sock = createSocket({ type: 'udp6', ipv6Only: false, recvBufferSize: 4 * 1024 * 1024 });
  const streamId = randomBytes(8);
  const peerAddress = o.peer ? (isIPv6(o.peer.address) ? o.peer.address : `::ffff:${o.peer.address}`) : '';
  const seen = new Map<string, Set<number>>();
  let sent = 0;
  let received = 0;
  let duplicates = 0;
  let lastAt = 0;
  let maxGapMs = 0;
  const unique = (): number => [...seen.values()].reduce((n, s) => n + s.size, 0);
  sock.on('message', (msg) => {
    if (msg.length < 12) return;
    received++;
    const now = performance.now();
    if (lastAt > 0) maxGapMs = Math.max(maxGapMs, now - lastAt);
    lastAt = now;
    const key = msg.subarray(0, 8).toString('hex');
    let s = seen.get(key);
    if (!s) seen.set(key, (s = new Set()));
    const seq = msg.readUInt32BE(8);
    if (s.has(seq)) duplicates++;
    else s.add(seq);
  });
  sock.bind(o.port, () => {
    console.log(JSON.stringify({ listening: sock.address().port }));
    if (o.waitForGo) process.stdin.once('data', () => stream());
    else stream();
  });
  const stream = (): void => {
    const t0 = performance.now();
    const total = Math.round(o.rate * o.seconds);
    // Every 5 ms, send what the rate says is due by now: a steady rate without a timer per packet.
    const pump = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * o.rate));
      while (sent < due) {
        // A buffer per datagram: dgram sends asynchronously and reads the buffer later.
        const pkt = Buffer.alloc(o.size);
        streamId.copy(pkt, 0);
        pkt.writeUInt32BE(sent, 8);
        sock.send(pkt, o.peer!.port, peerAddress);
        sent++;
      }
    }, 5);
    const report = o.reportEveryS > 0 ? setInterval(() => console.log(JSON.stringify({ at_s: Math.round((performance.now() - t0) / 1000), sent, unique: unique() })), o.reportEveryS * 1000) : undefined;
    setTimeout(() => {
      clearInterval(pump);
      clearInterval(report);
      setTimeout(() => {
        console.log(JSON.stringify({ sent, received, unique: unique(), duplicates, fromPeers: seen.size, maxGapMs: Math.round(maxGapMs) }));
        sock.close();
      }, o.graceMs);
    }, o.seconds * 1000 + 10);
  };
}

main();
