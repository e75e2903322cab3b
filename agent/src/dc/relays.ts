// The DC's Relay Servers (paper §3.1: relays that come and go with load; §2.4: choosing one by distance and load):
// which RSs it knows (configured; announced by the RS itself: a signed HELLO, then sealed load reports, from an ID
// the DC accepts; or listed for it on the ledger: the EVM contract's announceRelay), forgetting an announced one that
// falls silent and a listed one withdrawn; its own RTT to each (RS_PING, answered by the RS's
// pong); what the route rule sees of each (dc/route.ts RelayView: the reported load plus the tunnels directed there
// since); and the record of each relayed route's choice (status), so the rule can be checked on real figures.
import type { Endpoint } from '../types/net.js';
import type { RelayAnnouncement } from '../types/registry.js';
import { decodeServerRecord, type ServerRecord } from '../protocol/dc-record.js';
import { formatId } from '../crypto/secp256k1.js';
import { randomBytes } from 'node:crypto';
import { decodeRsPing, encodeRsPing } from '../protocol/relay.js';
import { formatEndpoint } from '../protocol/endpoint.js';
import { RTT_SAMPLES, newRelay, relaySilent, type DcCore, type RelayState } from './core.js';
import type { RelayCandidate, RelayView } from './route.js';

/** A relayed route directed through an RS whose ends have not bound there after this long (ms) counts no more. */
const UNBOUND_MS = 5000;
/** A load report older than this (ms) is no longer trusted (four periods of the default 5 s, and then some). */
const LOAD_TRUST_MS = 60_000;
/** Choices kept for the status. */
const CHOICES_KEPT = 64;

/** The latest route the DC directed between two of its own terminals, when it is relayed (what a drain moves). */
export interface PairRoute {
  readonly a: string;
  readonly b: string;
  readonly rsId: string;
  readonly at: number;
}

/** Pairs remembered at most (the oldest go first). */
const PAIRS_KEPT = 10_000;

export class Relays {
  /** Latest relayed route per pair of our own terminals ("a b", sorted), for moving them off a draining RS. */
  readonly pairs = new Map<string, PairRoute>();
  /** Pings in flight: nonce → RS and when it went (monotonic ms). */
  private readonly pings = new Map<bigint, { id: string; at: number }>();
  private lastPing = -Infinity;

  constructor(private readonly dc: DcCore) {}

  /** Whether frames sealed by `id` are taken (a known RS, or one the DC accepts when it announces itself). */
  trusts(id: string): boolean {
    return this.dc.relays.has(id) || this.dc.acceptedRelays.has(id);
  }

  /** A signed RS record (HELLO): the RS, known or accepted now, with its addresses (none advertised: where it came from). */
  onRecord(rec: ServerRecord, id: string, from: Endpoint): RelayState | undefined {
    const r = this.known(id);
    if (!r) return undefined;
    this.takeRecord(r, rec, [from]);
    r.heardAt = this.dc.clock.monotonic();
    return r;
  }

  private takeRecord(r: RelayState, rec: ServerRecord, fallback: readonly Endpoint[]): void {
    r.publicKey = Buffer.from(rec.publicKey);
    const eps = rec.endpoints.length > 0 ? rec.endpoints : fallback;
    for (const e of eps) {
      // A configured address stays; an announced or listed RS's addresses follow what it says.
      if (e.family === 4 && (!r.v4 || r.source !== 'config')) r.v4 = e;
      if (e.family === 6 && (!r.v6 || r.source !== 'config')) r.v6 = e;
    }
  }

  /**
   * An RS the ledger lists for this DC, or no longer lists (no record). Write access to the ledger is the trust here
   * (docs/ledger.md: the ISP's permissioned chain; the contract takes an announcement only from the RS's own
   * account): a listed RS is taken without dc.acceptRelays, at the addresses of its signed record (none: where its
   * HELLO comes from), greeted and pinged at once (the caller sends the HELLO), and kept until it withdraws, however
   * long it is silent (silent, it is ranked as full). A withdrawn one is forgotten, and its HELLOs are taken again only
   * if the configuration accepts it.
   */
  onLedger(a: RelayAnnouncement): RelayState | undefined {
    const { dc } = this;
    const have = dc.relays.get(a.id);
    if (!a.record) {
      if (have?.source !== 'ledger') return undefined;
      dc.relays.delete(a.id);
      dc.log.info('relay server withdrawn on the ledger: forgotten', { id: a.id });
      return undefined;
    }
    const rec = decodeServerRecord(a.record);
    if (!rec.ok || rec.value.role !== 'rs' || formatId(rec.value.id) !== a.id) {
      dc.drops.inc('ledger-relay-record');
      dc.log.warn('relay server on the ledger with a record that does not verify: not taken', { id: a.id, reason: rec.ok ? 'not its own RS record' : rec.reason });
      return undefined;
    }
    const r = have ?? newRelay(a.id, 'ledger');
    if (!have) {
      dc.relays.set(a.id, r);
      dc.log.info('relay server found in the ledger', { id: a.id, endpoints: rec.value.endpoints.map(formatEndpoint) });
    }
    this.takeRecord(r, rec.value, []);
    // Pinged with the next tick: its RTT is known before the first route through it.
    this.lastPing = -Infinity;
    return r;
  }

  /** A sealed load report from `id` (authenticated by the seal). */
  onLoad(id: string, publicKey: Buffer, m: { tunnels: number; capacity: number; packetsPerS: number; v4?: Endpoint; v6?: Endpoint; bound?: number }, from: Endpoint): boolean {
    const r = this.known(id);
    if (!r) return false;
    const now = this.dc.clock.monotonic();
    r.publicKey ??= publicKey;
    r.load = m.capacity > 0 ? m.tunnels / m.capacity : 1;
    // An RS also reports at once on a HELLO: the longer of the last two intervals is taken as its period (relaySilent).
    if (r.loadAt !== undefined) {
      const interval = now - r.loadAt;
      r.reportEveryMs = Math.max(interval, r.lastIntervalMs ?? 0);
      r.lastIntervalMs = interval;
    }
    r.loadAt = now;
    r.tunnels = m.tunnels;
    r.capacity = m.capacity;
    r.packetsPerS = m.packetsPerS;
    r.heardAt = now;
    // The report counts what the RS has now. An RS that counts the tunnels it made from our tickets says how many of
    // the routes we directed there bound since its last report: the oldest of them, now in `tunnels`; one whose ends
    // never bind stops counting after UNBOUND_MS. Without that count: routes directed in the last moment may not have
    // bound yet, the others have.
    if (m.bound !== undefined && r.bound !== undefined) {
      r.assigned.splice(0, Math.min((m.bound - r.bound) >>> 0, r.assigned.length));
      r.assigned = r.assigned.filter((t) => now - t < UNBOUND_MS);
    } else r.assigned = r.assigned.filter((t) => now - t < this.bindGraceMs(r));
    r.bound = m.bound;
    if (m.v4) r.v4 = m.v4;
    if (m.v6) r.v6 = m.v6;
    if (!r.v4 && !r.v6) {
      if (from.family === 4) r.v4 = from;
      else r.v6 = from;
    }
    return true;
  }

  /** A relayed route's ends bind within about one RTT to the RS of the report's direction plus the DC's answer. */
  private bindGraceMs(r: RelayState): number {
    return 2 * (r.dcRtt ?? 100) + 50;
  }

  private known(id: string): RelayState | undefined {
    let r = this.dc.relays.get(id);
    if (!r && this.dc.acceptedRelays.has(id)) {
      r = newRelay(id, 'announced');
      this.dc.relays.set(id, r);
      this.dc.log.info('relay server announced itself', { id });
    }
    return r;
  }

  /** Every second: RS_PINGs each dc.relayPingS, and announced RSs silent for dc.relayForgetS forgotten. */
  tick(): void {
    const { dc } = this;
    const now = dc.clock.monotonic();
    for (const [k, p] of this.pings) if (now - p.at > 10_000) this.pings.delete(k);
    for (const r of [...dc.relays.values()]) {
      if (r.source === 'announced' && now - (r.heardAt ?? now) > dc.config.relayForgetS * 1000) {
        dc.relays.delete(r.id);
        dc.log.info('relay server silent: forgotten', { id: r.id });
      }
    }
    if (now - this.lastPing < dc.config.relayPingS * 1000) return;
    this.lastPing = now;
    for (const r of dc.relays.values()) {
      const to = r.v4 ?? r.v6;
      if (!to) continue;
      const nonce = randomBytes(8).readBigUInt64BE(0);
      this.pings.set(nonce, { id: r.id, at: now });
      dc.send(encodeRsPing(0, nonce), to);
    }
  }

  /** An RS's pong: the DC's RTT to it. */
  onPong(data: Buffer): void {
    const p = decodeRsPing(data);
    if (!p.ok || p.value.kind !== 1) return this.dc.drops.inc('pong-malformed');
    const s = this.pings.get(p.value.nonce);
    if (!s) return this.dc.drops.inc('pong-unknown');
    this.pings.delete(p.value.nonce);
    const r = this.dc.relays.get(s.id);
    if (!r) return;
    r.rttSamples.push(this.dc.clock.monotonic() - s.at);
    if (r.rttSamples.length > RTT_SAMPLES) r.rttSamples.shift();
    r.dcRtt = Math.min(...r.rttSamples);
    this.dc.counts.inc('rs-pongs');
  }

  /** What the route rule sees of each RS. */
  views(): RelayView[] {
    const now = this.dc.clock.monotonic();
    return [...this.dc.relays.values()].map((r) => {
      const fresh = r.load !== undefined && r.loadAt !== undefined && now - r.loadAt < LOAD_TRUST_MS;
      // Tunnels directed since the report count as load at once, so a burst of directions spreads (docs/protocol.md §3.5);
      // an RS that stopped reporting is ranked as full (RS failover).
      const load = relaySilent(r, now) ? 1 : fresh ? (r.capacity ? (r.tunnels! + r.assigned.length) / r.capacity : r.load!) : undefined;
      return {
        id: r.id,
        ...(r.v4 ? { v4: r.v4 } : {}),
        ...(r.v6 ? { v6: r.v6 } : {}),
        ...(load !== undefined ? { load: Math.min(1, load) } : {}),
        ...(r.dcRtt !== undefined ? { dcRtt: r.dcRtt } : {}),
        ...(r.draining ? { draining: true } : {}),
      };
    });
  }

  /**
   * A route between `a` and `b` (both ours: `local`): the pair's latest relayed route is kept while it is relayed, so a
   * drain can move it; a direct one forgets it.
   */
  routed(a: string, b: string, rsId: string | undefined, local: boolean): void {
    const key = a < b ? `${a} ${b}` : `${b} ${a}`;
    this.pairs.delete(key);
    if (!rsId || !local) return;
    this.pairs.set(key, { a, b, rsId, at: this.dc.clock.monotonic() });
    if (this.pairs.size > PAIRS_KEPT) this.pairs.delete(this.pairs.keys().next().value!);
  }

  /** A relayed route directed through `rsId`: its load counts from now; the choice is kept for the status. */
  chosen(tunnelId: bigint, a: string, b: string, rsId: string, candidates: readonly RelayCandidate[]): void {
    const r = this.dc.relays.get(rsId);
    r?.assigned.push(this.dc.clock.monotonic());
    const list = this.dc.relayChoices;
    list.push({ at: this.dc.clock.now(), tunnelId: tunnelId.toString(16), a, b, rsId, candidates });
    if (list.length > CHOICES_KEPT) list.shift();
  }

  status(): Array<Record<string, unknown>> {
    const now = this.dc.clock.monotonic();
    return [...this.dc.relays.values()].map((r) => ({
      id: r.id,
      source: r.source,
      v4: r.v4 ? formatEndpoint(r.v4) : null,
      v6: r.v6 ? formatEndpoint(r.v6) : null,
      load: r.load ?? null,
      tunnels: r.tunnels ?? null,
      capacity: r.capacity ?? null,
      packetsPerS: r.packetsPerS ?? null,
      directedSinceReport: r.assigned.length,
      dcRttMs: r.dcRtt === undefined ? null : Math.round(r.dcRtt * 100) / 100,
      heardAgoMs: r.heardAt === undefined ? null : Math.round(now - r.heardAt),
      draining: r.draining,
      silent: relaySilent(r, now),
    }));
  }
}
