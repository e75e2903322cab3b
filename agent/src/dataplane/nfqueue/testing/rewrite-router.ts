// Test support: a one-to-one NAT on NFQUEUE, the shape of the data plane's tunnel → LAN path without the tunnel.
// Started inside the router namespace of tests/netns/nfqueue-rewrite.test.ts, where raw PREROUTING queues packets
// to the virtual addresses and the replies of the real hosts. Packets to `virtual` get destination `real`; packets
// from `real` get source `virtual` (ICMP errors translated inside too); SYNs get their MSS clamped; everything is
// ACCEPTed with the rewritten bytes for the kernel to route onward.
//
//   node rewrite-router.js '{"queue":N,"mss":M,"map":[{"virtual":"198.18.0.10","real":"10.77.2.2"},…]}'
// Prints "ready", then a JSON line of counters for each "stats" line read on stdin.
import { createInterface } from 'node:readline';
import { PacketInfo, PROTO_TCP, addressEquals, isIcmpError, parsePacket } from '../../packet/parse.js';
import { rewriteAddress } from '../../packet/rewrite.js';
import { clampTcpMss } from '../../packet/mss.js';
import { ipToBytes } from '../../../protocol/ip.js';
import { openNfqueueSource } from '../source.js';

interface Config {
  readonly queue: number;
  readonly mss: number;
  readonly map: readonly { readonly virtual: string; readonly real: string }[];
}

const config = JSON.parse(process.argv[2] ?? '{}') as Config;
const map = config.map.map((m) => ({ virtual: ipToBytes(m.virtual), real: ipToBytes(m.real) }));
const stats = { toReal: 0, toVirtual: 0, other: 0, malformed: 0, failed: 0, clamped: 0, icmpErrors: 0, maxTcpPayloadFromReal: 0, v4: 0, v6: 0 };

const info = new PacketInfo();
const source = openNfqueueSource({ queue: config.queue });
source.onPacket((p) => {
  const buf = p.data;
  const r = parsePacket(buf, info);
  if (!r.ok) {
    stats.malformed++;
    return 'drop';
  }
  if (info.version === 4) stats.v4++;
  else stats.v6++;
  for (const m of map) {
    if (m.virtual.length !== (info.version === 4 ? 4 : 16)) continue;
    let done;
    if (addressEquals(buf, info, 'dst', m.virtual)) {
      done = rewriteAddress(buf, info, 'dst', m.real);
      stats.toReal++;
    } else if (addressEquals(buf, info, 'src', m.real)) {
      if (info.protocol === PROTO_TCP && info.payloadOffset >= 0)
        stats.maxTcpPayloadFromReal = Math.max(stats.maxTcpPayloadFromReal, info.end - info.payloadOffset);
      done = rewriteAddress(buf, info, 'src', m.virtual);
      stats.toVirtual++;
    } else continue;
    if (!done.ok) {
      stats.failed++;
      return 'drop';
    }
    if (isIcmpError(info)) stats.icmpErrors++;
    if (config.mss > 0 && clampTcpMss(buf, info, config.mss)) stats.clamped++;
    p.replacePayload(buf);
    return 'accept';
  }
  stats.other++;
  return 'accept';
});

console.log('ready');
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'stats') console.log(JSON.stringify({ ...stats, counters: source.counters }));
});
