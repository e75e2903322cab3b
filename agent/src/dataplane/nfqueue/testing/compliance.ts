// Test support: the compliance suite every PacketSource passes (as js-libp2p's interface-compliance-tests): the
// real NFQUEUE source inside a network namespace with real UDP datagrams, and the in-memory fake in a unit test.
//
// A harness offers "lanes": UDP datagrams from the harness's sender to its receiver that cross the source under
// test. The 'marked' lane continues through a rule that drops packets without COMPLIANCE_MARK, so a mark given
// with the verdict is observable. Cases run in order on one harness; the last one closes the source.
import assert from 'node:assert/strict';
import type { PacketSource, PendingPacket, QueuedPacket } from '../../../types/packet-source.js';
import { PacketInfo, parsePacket } from '../../packet/parse.js';
import { fillChecksums } from '../../packet/sums.js';
import { put16 } from '../../packet/checksum.js';
import { FakePacketSource } from '../fake.js';
import { buildPacket } from '../../packet/testing/build.js';
import { verifyChecksums } from '../../packet/sums.js';

export type Lane = 'plain' | 'marked' | 'plain6';
export const LANES: readonly Lane[] = ['plain', 'marked', 'plain6'];
export const COMPLIANCE_MARK = 0x2a;
export const LANE_PORT: Record<Lane, number> = { plain: 47001, marked: 47002, plain6: 47003 };

export interface ComplianceHarness {
  readonly source: PacketSource;
  /** Packets that may await a verdict at once; the next ones are dropped before the source sees them. */
  readonly queueMaxLength: number;
  /** Sends one UDP datagram carrying `payload` over `lane` (fire and forget). */
  send(lane: Lane, payload: Uint8Array): void;
  /** Removes and returns the payloads the receiver got on `lane`, oldest first. */
  take(lane: Lane): Uint8Array[];
  /** Waits until the receiver on `lane` holds `count` datagrams or `ms` pass; returns how many it holds. */
  waitFor(lane: Lane, count: number, ms: number): Promise<number>;
}

export interface ComplianceCase {
  readonly name: string;
  run(h: ComplianceHarness): Promise<void>;
}

/**
 * iptables-nft-restore input for the real harness's namespace (queue `queue`): locally sent datagrams to the lane
 * ports over loopback enter the queue in mangle OUTPUT; the filter OUTPUT rule after it drops unmarked 'marked'.
 */
export function complianceRules(queue: number): { readonly v4: string; readonly v6: string } {
  const q = `-j NFQUEUE --queue-num ${queue}`;
  return {
    v4: [
      '*mangle',
      `-A OUTPUT -o lo -p udp -m udp --dport ${LANE_PORT.plain} ${q}`,
      `-A OUTPUT -o lo -p udp -m udp --dport ${LANE_PORT.marked} ${q}`,
      'COMMIT',
      '*filter',
      `-A OUTPUT -o lo -p udp -m udp --dport ${LANE_PORT.marked} -m mark ! --mark 0x${COMPLIANCE_MARK.toString(16)} -j DROP`,
      'COMMIT',
      '',
    ].join('\n'),
    v6: ['*mangle', `-A OUTPUT -o lo -p udp -m udp --dport ${LANE_PORT.plain6} ${q}`, 'COMMIT', ''].join('\n'),
  };
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const utf8 = (s: string): Uint8Array => enc.encode(s);
const text = (b: Uint8Array): string => dec.decode(b);

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await sleep(5);
  }
  return true;
}

/** Payload of a UDP datagram in `pkt`, or null. */
function udpPayload(pkt: Uint8Array): Uint8Array | null {
  const r = parsePacket(pkt, new PacketInfo());
  if (!r.ok || r.protocol !== 17 || r.payloadOffset < 0) return null;
  return pkt.subarray(r.payloadOffset, r.end);
}

/** Writes into `out` the UDP datagram `pkt` with its payload replaced by `payload`; returns its length. */
function withPayload(pkt: Uint8Array, payload: Uint8Array, out: Uint8Array): number {
  const info = new PacketInfo();
  const r = parsePacket(pkt, info);
  if (!r.ok || r.payloadOffset < 0) return 0;
  const head = r.payloadOffset;
  out.set(pkt.subarray(0, head));
  out.set(payload, head);
  const n = head + payload.length;
  if (r.version === 4) put16(out, r.start + 2, n - r.start);
  else put16(out, r.start + 4, n - r.start - 40);
  put16(out, r.l4Offset + 4, n - r.l4Offset);
  const again = parsePacket(out.subarray(0, n), info);
  if (!again.ok) return 0;
  fillChecksums(out, again);
  return n;
}

type Snapshot = Record<keyof PacketSource['counters'], number>;
const snap = (s: PacketSource): Snapshot => ({ ...s.counters });
function delta(before: Snapshot, s: PacketSource): Partial<Snapshot> {
  const out: Partial<Snapshot> = {};
  for (const k of Object.keys(before) as (keyof Snapshot)[]) {
    const d = s.counters[k] - before[k];
    if (d !== 0) out[k] = d;
  }
  return out;
}

/** Lets datagrams that are going to arrive do so; used before asserting that something did not. */
const SETTLE_MS = 300;

export const complianceCases: readonly ComplianceCase[] = [
  {
    name: 'delivers each packet whole, with its queue number, and accept lets it continue',
    async run(h) {
      const seen: { data: Uint8Array; queue: number; id: number }[] = [];
      h.source.onPacket((p) => {
        seen.push({ data: p.data.slice(), queue: p.queue, id: p.id });
        return 'accept';
      });
      const before = snap(h.source);
      h.send('plain', utf8('hello'));
      assert.equal(await h.waitFor('plain', 1, 3000), 1);
      assert.deepEqual(h.take('plain').map(text), ['hello']);
      assert.equal(seen.length, 1);
      const info = parsePacket(seen[0]!.data, new PacketInfo());
      assert.ok(info.ok, 'the packet parses');
      assert.equal(info.version, 4);
      assert.equal(info.dstPort, LANE_PORT.plain);
      assert.equal(text(udpPayload(seen[0]!.data) ?? new Uint8Array(0)), 'hello');
      assert.equal(seen[0]!.queue, h.source.queue);
      assert.deepEqual(delta(before, h.source), { received: 1, accepted: 1 });
    },
  },
  {
    name: 'drop: the packet goes no further',
    async run(h) {
      h.source.onPacket(() => 'drop');
      const before = snap(h.source);
      h.send('plain', utf8('dropped'));
      assert.equal(await h.waitFor('plain', 1, SETTLE_MS), 0);
      assert.deepEqual(delta(before, h.source), { received: 1, dropped: 1 });
    },
  },
  {
    name: 'accept with replaced bytes: the new packet continues (longer, and changed in place)',
    async run(h) {
      const scratch = new Uint8Array(2048);
      h.source.onPacket((p) => {
        const payload = udpPayload(p.data);
        if (payload === null) return 'drop';
        if (text(payload) === 'short') {
          const n = withPayload(p.data, utf8('a much longer replacement'), scratch);
          if (n === 0) return 'drop';
          p.replacePayload(scratch.subarray(0, n));
          return 'accept';
        }
        payload.set(utf8(text(payload).toUpperCase()));
        const info = parsePacket(p.data, new PacketInfo());
        if (!info.ok) return 'drop';
        fillChecksums(p.data, info);
        p.replacePayload(p.data);
        return 'accept';
      });
      const before = snap(h.source);
      h.send('plain', utf8('short'));
      assert.equal(await h.waitFor('plain', 1, 3000), 1);
      h.send('plain', utf8('in place'));
      assert.equal(await h.waitFor('plain', 2, 3000), 2);
      assert.deepEqual(h.take('plain').map(text), ['a much longer replacement', 'IN PLACE']);
      assert.deepEqual(delta(before, h.source), { received: 2, accepted: 2, replaced: 2 });
    },
  },
  {
    name: 'a mark given with the verdict is seen by the rules after the queue',
    async run(h) {
      let mark = 0;
      h.source.onPacket((p) => {
        if (mark !== 0) p.setMark(mark);
        return 'accept';
      });
      h.send('marked', utf8('unmarked'));
      assert.equal(await h.waitFor('marked', 1, SETTLE_MS), 0, 'the unmarked packet is dropped by the later rule');
      mark = COMPLIANCE_MARK;
      h.send('marked', utf8('marked'));
      assert.equal(await h.waitFor('marked', 1, 3000), 1);
      assert.deepEqual(h.take('marked').map(text), ['marked']);
    },
  },
  {
    name: 'IPv6 packets are queued and verdicted like IPv4 ones',
    async run(h) {
      let version = 0;
      h.source.onPacket((p) => {
        version = p.data[0]! >> 4;
        return 'accept';
      });
      h.send('plain6', utf8('six'));
      assert.equal(await h.waitFor('plain6', 1, 3000), 1);
      assert.deepEqual(h.take('plain6').map(text), ['six']);
      assert.equal(version, 6);
    },
  },
  {
    name: 'deferred verdicts are issued later, in any order, and the bytes stay valid until then',
    async run(h) {
      const held: PendingPacket[] = [];
      h.source.onPacket((p) => {
        held.push(p.defer());
        return 'deferred';
      });
      const before = snap(h.source);
      for (const m of ['a', 'b', 'c']) h.send('plain', utf8(m));
      assert.ok(await until(() => h.source.counters.pending - before.pending === 3, 3000), 'three packets pending');
      assert.equal(await h.waitFor('plain', 1, 100), 0, 'nothing passes before its verdict');
      const [a, b, c] = held;
      assert.ok(a && b && c);
      assert.equal(text(udpPayload(a.data) ?? new Uint8Array(0)), 'a');
      c.accept();
      b.drop();
      const out = new Uint8Array(512);
      const n = withPayload(a.data, utf8('A!'), out);
      a.acceptWith(out.subarray(0, n));
      assert.equal(await h.waitFor('plain', 2, 3000), 2);
      assert.deepEqual(h.take('plain').map(text).sort(), ['A!', 'c']);
      assert.deepEqual(delta(before, h.source), { received: 3, deferred: 3, accepted: 2, replaced: 1, dropped: 1 });
    },
  },
  {
    name: 'a handler that throws drops its packet and counts an error; the next packet is served',
    async run(h) {
      h.source.onPacket((p) => {
        if (text(udpPayload(p.data) ?? new Uint8Array(0)) === 'boom') throw new Error('handler bug');
        return 'accept';
      });
      const before = snap(h.source);
      h.send('plain', utf8('boom'));
      h.send('plain', utf8('fine'));
      assert.equal(await h.waitFor('plain', 1, 3000), 1);
      assert.equal(await h.waitFor('plain', 2, SETTLE_MS), 1);
      assert.deepEqual(h.take('plain').map(text), ['fine']);
      assert.deepEqual(delta(before, h.source), { received: 2, accepted: 1, dropped: 1, errors: 1 });
    },
  },
  {
    name: "returning 'deferred' without defer() is a contract breach: dropped, counted",
    async run(h) {
      h.source.onPacket(() => 'deferred');
      const before = snap(h.source);
      h.send('plain', utf8('lost'));
      assert.equal(await h.waitFor('plain', 1, SETTLE_MS), 0);
      assert.deepEqual(delta(before, h.source), { received: 1, dropped: 1, errors: 1 });
    },
  },
  {
    name: 'settling a packet twice issues one verdict and counts the late one',
    async run(h) {
      let pending: PendingPacket | undefined;
      h.source.onPacket((p) => {
        pending = p.defer();
        return 'deferred';
      });
      const before = snap(h.source);
      h.send('plain', utf8('once'));
      assert.ok(await until(() => pending !== undefined, 3000));
      pending!.accept();
      pending!.drop();
      assert.equal(await h.waitFor('plain', 1, 3000), 1);
      assert.deepEqual(h.take('plain').map(text), ['once']);
      assert.deepEqual(delta(before, h.source), { received: 1, deferred: 1, accepted: 1, lateVerdicts: 1 });
    },
  },
  {
    name: 'a burst of 300 packets is delivered completely',
    async run(h) {
      h.source.onPacket(() => 'accept');
      for (let i = 0; i < 300; i++) h.send('plain', utf8(`n${i}`));
      assert.equal(await h.waitFor('plain', 300, 10000), 300);
      const got = new Set(h.take('plain').map(text));
      for (let i = 0; i < 300; i++) assert.ok(got.has(`n${i}`), `n${i} arrived`);
    },
  },
  {
    name: 'a full queue drops the excess: nothing passes without a verdict (fail closed)',
    async run(h) {
      const held: PendingPacket[] = [];
      h.source.onPacket((p: QueuedPacket) => {
        held.push(p.defer());
        return 'deferred';
      });
      const before = snap(h.source);
      const max = h.queueMaxLength;
      for (let i = 0; i < max + 50; i++) h.send('plain', utf8(`q${i}`));
      await until(() => h.source.counters.received - before.received >= max, 10000);
      await sleep(SETTLE_MS);
      assert.equal(h.source.counters.received - before.received, max, 'the source saw exactly a queue-full');
      assert.equal(h.take('plain').length, 0, 'nothing passed unverdicted');
      for (const p of held) p.accept();
      assert.equal(await h.waitFor('plain', max, 10000), max);
      assert.equal(await h.waitFor('plain', max + 1, SETTLE_MS), max, 'the excess is gone for good');
      h.take('plain');
    },
  },
  {
    name: 'close(): pending packets are dropped, later ones too, and the handler is not called again',
    async run(h) {
      let calls = 0;
      h.source.onPacket((p) => {
        calls++;
        p.defer();
        return 'deferred';
      });
      const before = snap(h.source);
      h.send('plain', utf8('p1'));
      h.send('plain', utf8('p2'));
      assert.ok(await until(() => h.source.counters.pending - before.pending === 2, 3000));
      await h.source.close();
      await h.source.close();
      h.send('plain', utf8('after'));
      assert.equal(await h.waitFor('plain', 1, SETTLE_MS), 0);
      assert.equal(calls, 2);
      assert.equal(h.source.counters.pending, 0);
      // The packet after close() never passes. A source that can unbind (the native one) never even sees it — the
      // kernel drops it, as there is no reader and no bypass; node-nfqueue cannot unbind and drops it itself.
      const d = delta(before, h.source);
      assert.equal(d.deferred, 2);
      assert.ok(d.received === 2 || d.received === 3, JSON.stringify(d));
      assert.equal(d.dropped, d.received, JSON.stringify(d));
    },
  },
];

/** Runs one case with a deadline, so a hung case fails instead of hanging the suite. */
export async function runCase(c: ComplianceCase, h: ComplianceHarness, ms = 30000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`case timed out after ${ms} ms`)), ms);
  });
  try {
    await Promise.race([c.run(h), deadline]);
  } finally {
    clearTimeout(timer);
    for (const lane of LANES) h.take(lane);
  }
}

/** A harness over the fake source: the "network" after the queue checks what a kernel would, in memory. */
export function fakeHarness(source = new FakePacketSource({ queue: 7 })): ComplianceHarness {
  const got: Record<Lane, Uint8Array[]> = { plain: [], marked: [], plain6: [] };
  const v4 = { src: Uint8Array.from([127, 0, 0, 1]), dst: Uint8Array.from([127, 0, 0, 1]) };
  const loop6 = new Uint8Array(16);
  loop6[15] = 1;
  return {
    source,
    queueMaxLength: source.maxLength,
    send(lane, payload) {
      const addrs = lane === 'plain6' ? { src: loop6, dst: loop6 } : v4;
      const pkt = buildPacket({ ...addrs, protocol: 'udp', srcPort: 40000, dstPort: LANE_PORT[lane], payload });
      void source.inject(pkt).then((v) => {
        if (!v.delivered || v.verdict === 'drop') return;
        // What the rest of the path does: a packet with a bad checksum dies at the socket; the 'marked' lane's rule.
        const info = parsePacket(v.data, new PacketInfo());
        if (!info.ok) return;
        const sums = verifyChecksums(v.data, info);
        if (!sums.ip || !sums.l4) return;
        const to = LANES.find((l) => LANE_PORT[l] === info.dstPort);
        if (to === undefined) return;
        if (to === 'marked' && v.mark !== COMPLIANCE_MARK) return;
        got[to].push(v.data.slice(info.payloadOffset, info.end));
      });
    },
    take(lane) {
      return got[lane].splice(0);
    },
    async waitFor(lane, count, ms) {
      await until(() => got[lane].length >= count, ms);
      return got[lane].length;
    },
  };
}
