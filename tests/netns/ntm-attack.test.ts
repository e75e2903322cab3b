// Issue 3, "Done when" #4 on the household topology (no link delays: this is about load, not latency). The DC, the RS
// and a terminal ("home") run on the vCPE; the phone (on LTE) has a direct tunnel to home and a relayed one to the
// laptop on the home LAN. An eavesdropper on the ISP core captures the phone's genuine packets to the three servers;
// an attacker on the Internet server replays them, truncated, bit-flipped and oversized, as a flood. Every attack
// packet must be dropped and counted by reason (the roles' `status`), and the phone must keep registering, getting
// directions, setting up tunnels and carrying traffic during the flood and after it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withTestbed } from '../lib/testbed.js';
import { firstJsonLine, printId, startNtm, tunnelTo, waitFor, type Daemon, withDaemons } from '../lib/ntm.js';
import { probe, startEcho } from '../lib/probes.js';

const VCPE = '198.51.100.2';
const FLOOD_S = 12;
const FLOOD_PPS = 2500;

/** UDP payloads sent to `VCPE` in a pcap file (Ethernet, IPv4, unfragmented), with their destination port. */
function udpToVcpe(pcap: Buffer): Array<{ port: number; payload: Buffer }> {
  const out: Array<{ port: number; payload: Buffer }> = [];
  const le = pcap.readUInt32LE(0) === 0xa1b2c3d4;
  const u32 = (o: number) => (le ? pcap.readUInt32LE(o) : pcap.readUInt32BE(o));
  for (let off = 24; off + 16 <= pcap.length; ) {
    const incl = u32(off + 8);
    const f = pcap.subarray(off + 16, off + 16 + incl);
    off += 16 + incl;
    if (f.length < 42 || f.readUInt16BE(12) !== 0x0800) continue;
    const ip = f.subarray(14);
    const ihl = (ip[0]! & 0x0f) * 4;
    if (ip[9] !== 17 || (ip.readUInt16BE(6) & 0x3fff) !== 0) continue;
    if (`${ip[16]}.${ip[17]}.${ip[18]}.${ip[19]}` !== VCPE) continue;
    const udp = ip.subarray(ihl);
    const len = udp.readUInt16BE(4);
    out.push({ port: udp.readUInt16BE(2), payload: Buffer.from(udp.subarray(8, len)) });
  }
  return out;
}

type Mutation = 'replayed' | 'truncated' | 'bit-flipped' | 'oversized';

/** Every attack variant of one genuine packet. */
function variants(p: Buffer): Array<{ kind: Mutation; bytes: Buffer }> {
  const v: Array<{ kind: Mutation; bytes: Buffer }> = [{ kind: 'replayed', bytes: p }];
  for (const n of new Set([0, 1, 3, 8, Math.floor(p.length / 2), p.length - 1])) if (n < p.length) v.push({ kind: 'truncated', bytes: p.subarray(0, n) });
  for (let i = 0; i < 8; i++) {
    const f = Buffer.from(p);
    // Flip one bit; the first four kept in the header half the time so the packet reaches its type's own checks.
    const at = i < 4 ? 4 + Math.floor(Math.random() * Math.max(1, p.length - 4)) : Math.floor(Math.random() * p.length);
    f[at] = f[at]! ^ (1 << Math.floor(Math.random() * 8));
    v.push({ kind: 'bit-flipped', bytes: f });
  }
  for (const size of [4097, 9000]) v.push({ kind: 'oversized', bytes: Buffer.concat([p, randomBytes(size - p.length)]) });
  return v;
}

/** The flooder, run with `node -e` on the attacker: sends the packets of a JSON file round-robin at a rate. */
const FLOOD = `const dgram = require('node:dgram');
const fs = require('node:fs');
const [file, pps, seconds] = process.argv.slice(1);
const list = JSON.parse(fs.readFileSync(file, 'utf8')).map((p) => ({ host: p.host, port: p.port, bytes: Buffer.from(p.hex, 'hex') }));
const s = dgram.createSocket('udp4');
let i = 0, sent = 0; const t0 = Date.now(); const end = t0 + Number(seconds) * 1000;
const tick = () => {
  const now = Date.now();
  const due = Math.floor(((now - t0) / 1000) * Number(pps));
  for (let n = 0; sent < due && n < 200; n++, sent++) { const p = list[i++ % list.length]; s.send(p.bytes, p.port, p.host); }
  if (now < end) setImmediate(tick); else setTimeout(() => { console.log(JSON.stringify({ sent, seconds: (Date.now() - t0) / 1000 })); s.close(); }, 200);
};
tick();`;

type Counts = Record<string, number>;
const sum = (c: Counts) => Object.values(c).reduce((a, b) => a + b, 0);
const delta = (after: Counts, before: Counts): Counts =>
  Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]).filter(([, v]) => (v as number) > 0));

interface Valid {
  registrations: number[];
  connects: number[];
  failures: string[];
}

/**
 * What the phone does, over and over, while `until` is in the future: open a tunnel to home and, from `registerFrom`
 * on, re-register first (before that its control channel stays the one the captured frames belong to, so their
 * copies meet a live channel and its replay window).
 */
async function keepServing(phone: Daemon, until: number, registerFrom = 0): Promise<Valid> {
  const v: Valid = { registrations: [], connects: [], failures: [] };
  while (Date.now() < until) {
    try {
      if (Date.now() >= registerFrom) {
        const r = (await phone.call({ cmd: 'register' }, 15_000)) as { ms: number };
        v.registrations.push(Math.round(r.ms * 10) / 10);
      }
      const c = (await phone.call({ cmd: 'connect', target: 'home.ntm' }, 20_000)) as { ms: number; tunnel: { state: string } };
      if (c.tunnel.state !== 'up') v.failures.push(`connect: ${c.tunnel.state}`);
      v.connects.push(Math.round(c.ms * 10) / 10);
    } catch (e) {
      v.failures.push((e as Error).message);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  return v;
}

const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? null;

void describe('hostile packets against DC, RS and terminal (household)', () => {
  test('replayed, truncated, bit-flipped and oversized packets are dropped and counted; the phone is served throughout', async (t) => {
    await withTestbed('household', { delays: false }, (tb) =>
      withDaemons('ntm-test-', (line) => t.diagnostic(line), async ({ dir: root, started }) => {
        const dir = (n: string) => join(root, n);
        await tb.move('phone', 'lte');
        const dcId = await printId(tb, 'vcpe', 'dc', dir('dc'));
        const rsId = await printId(tb, 'vcpe', 'rs', dir('rs'));
        const dc = await startNtm(tb, 'vcpe', 'dc', ['--advertise', `${VCPE}:7100`, '--relay', `${rsId.id}@${VCPE}:7200`, '--pool', '198.18.1.0/24'], dir('dc'));
        started.push(dc);
        const rs = await startNtm(tb, 'vcpe', 'rs', ['--report-to', `${dcId.id}@${VCPE}:7100`, '--advertise', `${VCPE}:7200`], dir('rs'));
        started.push(rs);
        await waitFor('the DC has the RS load report', async () => ((await dc.status()).relays as Array<{ load: number | null }>).every((r) => r.load !== null), 15_000);
        const dcRef = `${dcId.publicKey}@${VCPE}:7100`;
        const home = await startNtm(tb, 'vcpe', 'up', ['--dc', dcRef, '--name', 'home', '--dns', ''], dir('home'));
        started.push(home);
        const laptop = await startNtm(tb, 'laptop', 'up', ['--dc', dcRef, '--name', 'laptop', '--dns', ''], dir('laptop'));
        started.push(laptop);
        const phone = await startNtm(tb, 'phone', 'up', ['--dc', dcRef, '--name', 'phone', '--dns', ''], dir('phone'));
        started.push(phone);
        const homePort = Number(home.ready.port);
        await startEcho(tb, 'vcpe');
        await startEcho(tb, 'laptop');
        const homeEcho = `${String(home.ready.v4)}:7777`;
        const laptopEcho = `${String(laptop.ready.v4)}:7777`;

        // Genuine traffic, captured on the ISP core: registration, directions, both tunnels, data.
        const pcapFile = join(root, 'isp.pcap');
        const dump = tb.spawn('isp', ['tcpdump', '-i', 'vcpe0', '-U', '-w', pcapFile, 'udp', 'and', 'dst', 'host', VCPE], { stdio: ['ignore', 'ignore', 'pipe'] });
        await new Promise<void>((resolve, reject) => {
          let err = '';
          const timer = setTimeout(() => reject(new Error(`tcpdump did not start: ${err}`)), 15_000);
          dump.stderr!.on('data', (d: Buffer) => {
            err += d.toString();
            if (/listening on/.test(err)) {
              clearTimeout(timer);
              resolve();
            }
          });
        });
        await phone.call({ cmd: 'register' });
        const toHome = (await phone.call({ cmd: 'connect', target: 'home.ntm' }, 20_000)) as { tunnel: { path: string } };
        const toLaptop = (await phone.call({ cmd: 'connect', target: 'laptop.ntm' }, 20_000)) as { tunnel: { path: string } };
        assert.equal(toHome.tunnel.path, 'direct');
        assert.equal(toLaptop.tunnel.path, 'relayed', 'the laptop (behind the vCPE) and the phone (behind the CGNAT) meet at the RS');
        assert.ok((await probe(tb, 'phone', [homeEcho, laptopEcho], { count: 20, intervalMs: 10 })).results.every((r) => r.received >= 19));
        await new Promise((r) => setTimeout(r, 500));
        dump.kill('SIGINT');
        await new Promise((r) => dump.once('exit', r));

        // The attack set: every variant of every captured packet to a server port. NAT probes, RS pings and punches
        // are left out: they are unauthenticated by design (an echo of the sender's mapping, an RTT probe, a prod
        // to resend a handshake), so answering a copy is their normal behaviour, not a failure to drop.
        const targets: Record<number, 'dc' | 'rs' | 'terminal'> = { 7100: 'dc', 7200: 'rs', [homePort]: 'terminal' };
        const genuine = udpToVcpe(readFileSync(pcapFile)).filter((p) => targets[p.port] && p.payload.length >= 4 && ![0x03, 0x22, 0x07].includes(p.payload[0]!));
        const types = (role: string) => [...new Set(genuine.filter((p) => targets[p.port] === role).map((p) => `0x${p.payload[0]!.toString(16).padStart(2, '0')}`))].sort();
        // A third of the flood for each role: their variants interleaved, the shorter lists repeated.
        const byRole = (['dc', 'rs', 'terminal'] as const).map((role) =>
          genuine.filter((p) => targets[p.port] === role).flatMap((p) => variants(p.payload).map((v) => ({ host: VCPE, port: p.port, kind: v.kind, hex: v.bytes.toString('hex') }))),
        );
        const longest = Math.max(...byRole.map((l) => l.length));
        const attack = Array.from({ length: longest }, (_, i) => byRole.map((l) => l[i % l.length]!)).flat();
        const perRole = { dc: 0, rs: 0, terminal: 0 };
        for (const a of attack) perRole[targets[a.port]!]++;
        const count = (role: string) => genuine.filter((p) => targets[p.port] === role).length;
        assert.ok(count('dc') >= 3 && count('rs') >= 2 && count('terminal') >= 5, JSON.stringify({ dc: [count('dc'), types('dc')], rs: [count('rs'), types('rs')], terminal: [count('terminal'), types('terminal')] }));
        const attackFile = join(root, 'attack.json');
        writeFileSync(attackFile, JSON.stringify(attack));

        const snapshot = async () => {
          const [d, r, h] = await Promise.all([dc.status(), rs.status(), home.status()]);
          return {
            dc: { rx: (d.counts as Counts).rx ?? 0, drops: d.drops as Counts },
            rs: { rx: (r.counts as Counts).rx ?? 0, drops: r.drops as Counts },
            terminal: { rx: (h.counts as Counts).rx ?? 0, drops: h.drops as Counts },
          };
        };
        const before = await snapshot();

        // The flood, with the phone carrying on meanwhile.
        const floodStart = Date.now();
        const flooder = tb.spawn('web', [process.execPath, '-e', FLOOD, attackFile, String(FLOOD_PPS), String(FLOOD_S)]);
        const flooded = firstJsonLine<{ sent: number; seconds: number }>(flooder, (FLOOD_S + 30) * 1000, 'flooder');
        await new Promise((r) => setTimeout(r, 500));
        const [during, traffic] = await Promise.all([
          keepServing(phone, floodStart + (FLOOD_S - 1) * 1000, floodStart + (FLOOD_S / 2) * 1000),
          probe(tb, 'phone', [homeEcho, laptopEcho], { count: 150, intervalMs: 50 }),
        ]);
        const { sent, seconds } = await flooded;
        await new Promise((r) => setTimeout(r, 500));
        const after = await snapshot();

        // Valid traffic kept working during the flood.
        assert.deepEqual(during.failures, [], 'every registration and tunnel setup of the phone succeeded during the flood');
        assert.ok(during.registrations.length >= 5 && during.connects.length >= 10, JSON.stringify(during));
        for (const r of traffic.results) assert.ok(r.received >= r.sent * 0.95, `UDP through ${r.target} during the flood: ${r.received}/${r.sent}`);

        // Every attack packet was dropped and counted (per role: what arrived of it, all dropped).
        const expected = { dc: (sent * perRole.dc) / attack.length, rs: (sent * perRole.rs) / attack.length, terminal: (sent * perRole.terminal) / attack.length };
        const report: Record<string, unknown> = {};
        for (const role of ['dc', 'rs', 'terminal'] as const) {
          const drops = delta(after[role].drops, before[role].drops);
          const rx = after[role].rx - before[role].rx;
          report[role] = { attackSent: Math.round(expected[role]), received: rx, dropped: sum(drops), byReason: drops };
          assert.ok(rx >= expected[role] * 0.95, `${role} received ${rx} of ~${Math.round(expected[role])} attack packets (UDP loss?)`);
          assert.ok(sum(drops) >= expected[role] * 0.95, `${role} dropped ${sum(drops)} of ~${Math.round(expected[role])}: ${JSON.stringify(drops)}`);
        }
        const dd = delta(after.dc.drops, before.dc.drops);
        const rd = delta(after.rs.drops, before.rs.drops);
        const td = delta(after.terminal.drops, before.terminal.drops);
        // (A flipped bit in a copy of a registration request mostly leaves its time as it was: a replay, found before
        // any MAC or signature is computed.)
        for (const k of ['length', 'reg-replay', 'reg-malformed', 'ctl-replay', 'ctl-unknown-session']) assert.ok((dd[k] ?? 0) > 0, `DC counts ${k}: ${JSON.stringify(dd)}`);
        for (const k of ['relay-not-bound', 'bind-replay', 'bind-malformed']) assert.ok((rd[k] ?? 0) > 0, `RS counts ${k}: ${JSON.stringify(rd)}`);
        for (const k of ['length', 'data-replay', 'data-auth']) assert.ok((td[k] ?? 0) > 0, `terminal counts ${k}: ${JSON.stringify(td)}`);

        // And after it: everything still answers and works.
        const afterFlood = await keepServing(phone, Date.now() + 1500);
        assert.deepEqual(afterFlood.failures, []);
        assert.ok((await probe(tb, 'phone', [homeEcho, laptopEcho], { count: 20, intervalMs: 10 })).results.every((r) => r.received >= 19));
        for (const d of started) assert.equal(d.proc.exitCode, null, `${d.host} ${JSON.stringify(d.ready.role)} still running`);
        assert.ok(await tunnelTo(phone, String(laptop.ready.id)));

        const figure = {
          flood: {
            packets: sent,
            seconds,
            pps: Math.round(sent / seconds),
            distinctAttackPackets: byRole.reduce((n, l) => n + l.length, 0),
            genuinePacketsCaptured: { dc: [count('dc'), types('dc')], rs: [count('rs'), types('rs')], terminal: [count('terminal'), types('terminal')] },
          },
          drops: report,
          phoneDuringFlood: {
            registrations: during.registrations.length,
            registrationMsMedian: med(during.registrations),
            registrationMsMax: Math.max(...during.registrations),
            tunnelSetups: during.connects.length,
            tunnelSetupMsMedian: med(during.connects),
            udpReceived: traffic.results.map((r) => `${r.received}/${r.sent}`),
          },
        };
        t.diagnostic(JSON.stringify(figure));
        console.log(JSON.stringify(figure));
      }),
    );
  });
});
