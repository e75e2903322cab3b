// Issue 11 #8: "the RS bind does not cover the sender's address". A tunnel end (here terminal A's own key, as a
// malicious or compromised end would have) signs a fresh RELAY_BIND for its live relayed tunnel and sends it from a
// victim's address. The RS must not send the tunnel's relayed traffic there: a bind from a new address is answered
// with a RELAY_CHALLENGE and binds only once the cookie is echoed (agent/src/crypto/source-cookie.ts). Real `ntm dc`, `ntm rs`
// and two `ntm up` behind symmetric NATs (the relayed case); the victim is a UDP socket on the DC's host.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { withTestbed } from '../lib/testbed.js';
import { ROOT, startNatpair, tunnelTo, waitFor, withDaemons, type TunnelStatus } from '../lib/ntm.js';
import { probe, startEcho } from '../lib/probes.js';
import { RELAY_BIND } from '../../agent/src/protocol/relay.js';

const NAT_WAN_A = '203.0.113.2';
const VICTIM = '192.0.2.2';
const VICTIM_PORT = 40_000;

/** The UDP payloads of a pcap file (Ethernet, Linux cooked v1/v2 link types; IPv4). */
function udpPayloads(pcap: Buffer): Buffer[] {
  const link = pcap.readUInt32LE(20);
  const linkHeader = link === 1 ? 14 : link === 113 ? 16 : link === 276 ? 20 : -1;
  if (linkHeader < 0) throw new Error(`pcap link type ${link}`);
  const out: Buffer[] = [];
  for (let off = 24; off + 16 <= pcap.length; ) {
    const caplen = pcap.readUInt32LE(off + 8);
    const pkt = pcap.subarray(off + 16, off + 16 + caplen);
    off += 16 + caplen;
    const ip = pkt.subarray(linkHeader);
    if (ip.length < 28 || ip[0]! >> 4 !== 4 || ip[9] !== 17) continue;
    out.push(ip.subarray((ip[0]! & 0xf) * 4 + 8));
  }
  return out;
}

// Signs a fresh bind for the captured ticket with A's key and sends it from the victim's address (a socket there that,
// as a victim would, never echoes a challenge); counts what the RS then sends to that address by message type.
const FORGE = `
import dgram from 'node:dgram';
const relay = await import(${JSON.stringify(`file://${ROOT}/dist/agent/src/protocol/relay.js`)});
const { loadOrCreateIdentity } = await import(${JSON.stringify(`file://${ROOT}/dist/agent/src/cmd/common.js`)});
const [captured, keyFile] = process.argv.slice(1);
const d = relay.decodeRelayBind(relay.splitBindCookie(Buffer.from(captured, 'hex')).bind);
if (!d.ok) throw new Error(d.reason);
const me = await loadOrCreateIdentity(keyFile);
const s = dgram.createSocket('udp4');
const seen = {};
s.on('message', (m) => { seen[m[0]] = (seen[m[0]] ?? 0) + 1; });
s.bind(${VICTIM_PORT}, '${VICTIM}', () => {
  for (let i = 0; i < 3; i++) setTimeout(() => s.send(relay.encodeRelayBind(d.value.ticket.bytes, d.value.role, Date.now(), me), 7200, '192.0.2.66'), i * 300);
  console.log(JSON.stringify({ sent: true }));
  setTimeout(() => { console.log(JSON.stringify({ seen })); s.close(); }, 5000);
});
`;

void describe('RS bind return routability', () => {
  test('a bind signed by a tunnel end but sent from a victim address gets no relayed traffic there; the tunnel keeps working', async (t) => {
    await withTestbed('natpair', { nat: { nata: 'symmetric', natb: 'symmetric' } }, (tb) =>
      withDaemons('ntm-test-', (line) => t.diagnostic(line), async ({ dir, started }) => {
        const pcap = join(dir, 'rs.pcap');
        const dump = tb.spawn('rs', ['tcpdump', '-i', 'any', '-U', '-w', pcap, 'udp', 'dst', 'port', '7200', 'and', 'src', 'host', NAT_WAN_A], { stdio: 'ignore' });
        const echo = await startEcho(tb, 'a');
        try {
          await new Promise((r) => setTimeout(r, 1000)); // tcpdump attaches
          const p = await startNatpair(tb, dir, started);
          const up = (await p.a.call({ cmd: 'connect', target: 'b.ntm' }, 30_000)) as { tunnel: TunnelStatus };
          assert.equal(up.tunnel.path, 'relayed');
          const bind = await waitFor('A\'s bind in the capture', () => udpPayloads(readFileSync(pcap)).find((u) => u[0] === RELAY_BIND), 10_000, 200);
          const before = await probe(tb, 'b', [`${String(p.a.ready.v4)}:7777`], { count: 10, intervalMs: 20 });
          assert.ok(before.results[0]!.received >= 9, `UDP B → A over the RS before: ${JSON.stringify(before.results[0])}`);

          const forge = tb.spawn('dc', [process.execPath, '--input-type=module', '-e', FORGE, bind.toString('hex'), join(p.dirs.a, 'terminal.key')]);
          let out = '';
          let err = '';
          forge.stdout!.on('data', (d: Buffer) => (out += d.toString()));
          forge.stderr!.on('data', (d: Buffer) => (err += d.toString()));
          const line = (key: string) => out.split('\n').find((l) => l.includes(`"${key}"`));
          await waitFor(`the forger sent its binds ${err}`, () => line('sent'), 10_000);
          await new Promise((r) => setTimeout(r, 500));
          // B keeps sending to A through the RS while the forged binds are in.
          const during = await probe(tb, 'b', [`${String(p.a.ready.v4)}:7777`], { count: 40, intervalMs: 50 });
          const { seen } = JSON.parse(await waitFor('the forger\'s count', () => line('seen'), 15_000)) as { seen: Record<string, number> };
          t.diagnostic(`victim received by type: ${JSON.stringify(seen)}; probe during: ${JSON.stringify(during.results[0])}`);
          assert.equal(seen[0x20] ?? 0, 0, 'no relayed frame reached the victim');
          assert.equal(seen[0x23] ?? 0, 0, 'no bind was accepted for the victim');
          const rs = await p.rs.status();
          assert.ok(((rs.counts as Record<string, number>)['bind-challenged'] ?? 0) >= 3, 'each forged bind was challenged');
          assert.ok(during.results[0]!.received >= 36, `UDP B → A still flows: ${JSON.stringify(during.results[0])}`);
          assert.equal((await tunnelTo(p.a, String(p.b.ready.id)))?.path, 'relayed');
        } finally {
          echo.kill();
          dump.kill('SIGINT');
        }
      }),
    );
  });
});
