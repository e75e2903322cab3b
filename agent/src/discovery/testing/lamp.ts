// A fake smart lamp for netns tests: an mDNS / DNS-SD responder (RFC 6762/6763) with the `multicast-dns` package,
// run inside a LAN namespace. It answers service enumeration, PTR, SRV, TXT and A queries, announces itself at
// start, says goodbye (TTL 0) on SIGTERM, and sends one datagram to the gateway as an appliance would (so the
// gateway's neighbour table learns its MAC). Test-only.
//
// Two things Avahi insists on (checked): the socket binds 0.0.0.0, not the interface address (a socket bound to a
// unicast address never receives the multicast queries), and records carry a non-zero TTL.
//
// usage: node lamp.js --name "Living Room Lamp" --type _http._tcp --port 8080 --host lamp-1 --ipv4 192.168.77.10
//                     [--gateway 192.168.77.1] [--txt key=value]…
import { createSocket } from 'node:dgram';
import makeMdns from 'multicast-dns';
import type { Answer } from 'dns-packet';

function arg(name: string, def?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : def;
  if (v === undefined) {
    console.error(`missing --${name}`);
    process.exit(2);
  }
  return v;
}

const name = arg('name');
const type = arg('type', '_http._tcp');
const port = Number(arg('port', '80'));
const host = `${arg('host')}.local`;
const ipv4 = arg('ipv4');
const gateway = process.argv.includes('--gateway') ? arg('gateway') : undefined;
const txt = process.argv.flatMap((a, i) => (process.argv[i - 1] === '--txt' ? [a] : []));
const TTL = 120;

const typeName = `${type}.local`;
const instance = `${name}.${typeName}`;
const META = '_services._dns-sd._udp.local';

const mdns = makeMdns({ bind: '0.0.0.0', interface: ipv4, multicast: true, reuseAddr: true });

function records(ttl: number): { ptr: Answer[]; srv: Answer[]; a: Answer[] } {
  return {
    ptr: [
      { name: typeName, type: 'PTR', ttl, data: instance },
      { name: META, type: 'PTR', ttl, data: typeName },
    ],
    srv: [
      { name: instance, type: 'SRV', ttl, data: { port, target: host, priority: 0, weight: 0 } },
      { name: instance, type: 'TXT', ttl, data: txt.length ? txt : ['path=/'] },
    ],
    a: [{ name: host, type: 'A', ttl, data: ipv4 }],
  };
}

mdns.on('query', (q) => {
  const r = records(TTL);
  const answers: Answer[] = [];
  for (const question of q.questions) {
    const n = question.name.toLowerCase();
    if (n === META) answers.push(r.ptr[1]!);
    else if (n === typeName.toLowerCase()) answers.push(r.ptr[0]!);
    else if (n === instance.toLowerCase()) answers.push(...r.srv);
    else if (n === host.toLowerCase() && (question.type === 'A' || (question.type as string) === 'ANY')) answers.push(...r.a);
  }
  if (answers.length === 0) return;
  // Additional records save the browser its follow-up queries (RFC 6763 §12).
  mdns.respond({ answers, additionals: answers.some((a) => a.type === 'PTR' && a.name === typeName) ? [...r.srv, ...r.a] : r.a });
});

function announce(ttl: number): void {
  const r = records(ttl);
  mdns.respond({ answers: [...r.ptr, ...r.srv, ...r.a] });
}

mdns.on('ready', () => {
  announce(TTL);
  setTimeout(() => announce(TTL), 1000).unref();
  if (gateway) {
    const s = createSocket('udp4');
    s.send(Buffer.from('hello'), 9, gateway, () => s.close());
  }
  console.log('ready');
});

process.on('SIGTERM', () => {
  announce(0);
  setTimeout(() => {
    mdns.destroy();
    process.exit(0);
  }, 200);
});
