// Issue 11 #4, "one key stops the DC", on the natpair topology with real `ntm dc`, `ntm rs` and `ntm up` processes. An
// attacker on the Internet floods the DC, at the highest rate one process here can send, with registrations forged
// with one key of its own (a genuine Node Transaction, a valid mac1, a wrong MAC) from 32,768 spoofed sources. Before
// the fix each cost the DC an ECDH (10 per source got past the per-source limit); now the DC under load answers each
// with a cookie reply and spends no EC operation. What a user sees is asserted: while the flood lasts, a terminal
// renews its registration and gets fresh directions to its peer, and a new terminal registers for the first time (its
// cookie round trip included), each within a few seconds; the DC's counters show the flood refused by cookie.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { withTestbed } from '../lib/testbed.js';
import { startNatpair, withDaemons } from '../lib/ntm.js';
import { pinServer, registrationFlood, startFlood } from '../lib/flood.js';
import { probe, startEcho } from '../lib/probes.js';
import { createRequest } from '../../agent/src/crypto/noise.js';
import { Identity } from '../../agent/src/protocol/identity.js';
import { loadOrCreateIdentity } from '../../agent/src/cmd/common.js';

const FLOOD_S = 12;
/** The bounds a user would still call working (the same requests take ~15 ms unflooded). */
const REGISTER_MS = 5000;
const CONNECT_MS = 8000;

type Counts = Record<string, number>;

void describe('floods of forged registrations (natpair)', () => {
  test('a flood from spoofed sources costs the DC no EC operation; registrations and directions are served throughout', async (t) => {
    await withTestbed('natpair', { nat: { nata: 'eim', natb: 'eim' }, delays: false }, (tb) =>
      withDaemons('ntm-test-', (line) => t.diagnostic(line), async ({ dir, started }) => {
        const p = await startNatpair(tb, dir, started);
        const { figure, served, quiet } = await registrationFlood(tb, p, dir, started, FLOOD_S);
        t.diagnostic(JSON.stringify({ ...figure, quiet }));
        const fresh = figure.served.newcomer;

        // What a user sees: everything asked for during the flood was answered, each within a few seconds.
        assert.deepEqual(served.failures, [], JSON.stringify(figure));
        assert.ok(served.registrations.length >= 3 && served.connects.length >= 3, JSON.stringify(figure));
        assert.ok(Math.max(...served.registrations) <= REGISTER_MS, `registrations during the flood: ${JSON.stringify(figure.served)}`);
        assert.ok(Math.max(...served.connects) <= CONNECT_MS, `directions during the flood: ${JSON.stringify(figure.served)}`);
        assert.ok(fresh.registrationMs <= REGISTER_MS, `a new terminal's first registration during the flood: ${JSON.stringify(fresh)}`);
        // And the DC refused the flood cheaply: each forged request it read got a cookie reply, or nothing when its
        // source had one in the last second; no ECDH for any (the newcomer's is one; the flood's first second, before
        // the DC counts itself under load, may add up to the dc.cookieAbovePerSec threshold).
        assert.ok(figure.dc.received >= 10_000, `the DC read ${figure.dc.received} packets of the flood`);
        assert.ok(figure.dc.received <= figure.flood.sent + 5000, 'received counts only the flood and the few real requests');
        assert.ok(figure.dc.cookieReplies + figure.dc.cookieRepeats >= figure.dc.received * 0.9 - 2000, JSON.stringify(figure.dc));
        assert.ok(figure.dc.cookieReplies >= Math.min(figure.flood.sources, figure.dc.received / 4), `every spoofed source was answered: ${JSON.stringify(figure.dc)}`);
        assert.ok(figure.dc.ecdh <= 250, JSON.stringify(figure.dc));
        console.log(JSON.stringify(figure));
      }),
    );
  });
});

void describe('floods of forged tunnel handshakes (natpair)', () => {
  test('forged TUNNEL_REQUESTs for a live tunnel cost the responder a few ECDHs in all; the tunnel keeps carrying traffic', async (t) => {
    await withTestbed('natpair', { nat: { nata: 'eim', natb: 'eim' }, delays: false }, (tb) =>
      withDaemons('ntm-test-', (line) => t.diagnostic(line), async ({ dir, started }) => {
        const p = await startNatpair(tb, dir, started);
        await startEcho(tb, 'b');
        await startEcho(tb, 'a');
        const c = (await p.a.call({ cmd: 'connect', target: 'b.ntm' }, 20_000)) as { tunnel: { tunnelId: string; initiator: boolean; endpoint: string; path: string } };
        assert.notEqual(c.tunnel.path, 'relayed', 'a direct (hole-punched) tunnel');
        // The flood goes to the tunnel's responder from the initiator's public address and port (an attacker on the
        // path knows both and the tunnel ID; the responder's NAT lets only that source in).
        const [responder, initiator, rHost] = c.tunnel.initiator ? [p.b, p.a, 'b'] : [p.a, p.b, 'a'];
        const tunnels = (await responder.status()).tunnels as Array<{ tunnelId: string; endpoint: string }>;
        const mine = tunnels.find((x) => x.tunnelId === c.tunnel.tunnelId);
        assert.ok(mine?.endpoint, JSON.stringify(tunnels));
        const [srcAddr, srcPort] = mine.endpoint.split(':') as [string, string];
        const [dstAddr, dstPort] = (c.tunnel.initiator ? c.tunnel.endpoint : String(((await initiator.status()).tunnels as Array<{ tunnelId: string; endpoint: string }>).find((x) => x.tunnelId === c.tunnel.tunnelId)?.endpoint)).split(':') as [string, string];
        const responderKey = await loadOrCreateIdentity(join(p.dirs[rHost as 'a' | 'b'], 'terminal.key'));
        const tunnelId = Buffer.from(c.tunnel.tunnelId.padStart(16, '0'), 'hex');
        // A well-formed Noise KK message 1 from a key of the attacker's own: the responder must do the ECDH of its
        // ephemeral before it can tell.
        const forged = createRequest({ localStatic: Identity.generate(), remoteStatic: responderKey.publicKey, tunnelId, senderIndex: 7 }).packet;
        pinServer(responder.proc.pid!);

        const before = (await responder.status()).drops as Counts;
        const flood = await startFlood(tb, 'rs', { payload: forged, dst: dstAddr, port: Number(dstPort), seconds: 10, sourceNet: `${srcAddr}/32`, sourcePort: Number(srcPort), sources: 512 });
        await new Promise((r) => setTimeout(r, 500));
        const peerEcho = `${String((rHost === 'b' ? p.b : p.a).ready.v4)}:7777`;
        const traffic = await probe(tb, rHost === 'b' ? 'a' : 'b', [peerEcho], { count: 150, intervalMs: 50 });
        const { sent, seconds } = await flood.done;
        await new Promise((r) => setTimeout(r, 300));
        const after = (await responder.status()).drops as Counts;
        const drops: Counts = {};
        for (const [k, v] of Object.entries(after)) if (k.startsWith('handshake-') && v > (before[k] ?? 0)) drops[k] = v - (before[k] ?? 0);
        const cheap = (drops['handshake-source-limit'] ?? 0) + (drops['handshake-tunnel-limit'] ?? 0);
        const dh = Object.entries(drops).filter(([k]) => !['handshake-source-limit', 'handshake-tunnel-limit'].includes(k)).reduce((n, [, v]) => n + v, 0);
        const figure = { flood: { sent, pps: Math.round(sent / seconds) }, responder: { refusedBeforeEcdh: cheap, ecdh: dh, drops }, tunnel: traffic.results.map((r) => `${r.received}/${r.sent}`) };
        t.diagnostic(JSON.stringify(figure));

        for (const r of traffic.results) assert.ok(r.received >= r.sent * 0.95, `through the tunnel during the flood: ${JSON.stringify(figure)}`);
        assert.ok(cheap >= 1000, `the flood reached the responder and was refused before any ECDH: ${JSON.stringify(figure)}`);
        // The source's burst and refill (50 + 5/s) and the tunnel's (10 + its rate) bound the ECDHs, whatever the rate.
        assert.ok(dh <= 60, `ECDHs spent on forged requests: ${JSON.stringify(figure)}`);
        console.log(JSON.stringify(figure));
      }),
    );
  });
});
