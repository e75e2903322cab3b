// Route computation (paper §2.3 "route direction"; §2.4/§3.1 relay choice): from both ends' addresses, families and
// NAT kinds, decide direct, hole-punched or relayed, who initiates, which endpoints to try, and which RS.
// Pure functions: no I/O, so the rules are unit-tested exhaustively.
import type { Endpoint } from '../types/net.js';
import { ipToBytes } from '../protocol/ip.js';

export type NatKind = 'none' | 'eim' | 'symmetric' | 'unknown';
export type PathKind = 'direct' | 'holepunch' | 'relay';

/** What a DC knows of one end of a prospective tunnel. */
export interface EndView {
  readonly id: string;
  /** Where the DC saw this terminal's packets come from (outside its NAT, if any). */
  readonly observed: Endpoint;
  /** NAT in front of `observed`: none (observed is one of the local addresses), EIM or symmetric. */
  readonly nat: NatKind;
  /** The terminal's own addresses with its socket port (what it reported). */
  readonly locals: readonly Endpoint[];
  /** Measured RTT (ms) from this end to each RS it probed, by RS id. */
  readonly rsRtt: ReadonlyMap<string, number>;
}

export interface RelayView {
  readonly id: string;
  readonly v4?: Endpoint;
  readonly v6?: Endpoint;
  /** Reported load, 0 (idle) … 1 (at capacity); undefined: not heard from (still usable, ranked last). */
  readonly load?: number;
  /** The DC's own RTT to this RS (ms, measured by its RS_PINGs), a stand-in when an end has not measured it. */
  readonly dcRtt?: number;
  /** Being retired (the autoscaler drains it): chosen only when nothing else can serve. */
  readonly draining?: boolean;
}

/** One relay's figures in a choice (what the DC status shows, and what a test recomputes the rule from). */
export interface RelayCandidate {
  readonly id: string;
  /** The RTT (ms) counted for each end, and whether that end measured it (else: an estimate, see chooseRelay). */
  readonly rttA: number;
  readonly rttB: number;
  readonly measuredA: boolean;
  readonly measuredB: boolean;
  readonly load: number;
  readonly score: number;
  /** Ranked last: ≥ 90% load (1), draining (2); 0 otherwise. */
  readonly rank: number;
}

export interface RelayChoice {
  readonly rsId: string;
  /** The RS address each end should use (each end's own family). */
  readonly forA: Endpoint;
  readonly forB: Endpoint;
}

export interface RoutePlan {
  readonly kind: PathKind;
  /** 'a' or 'b': the end that sends TUNNEL_REQUEST. */
  readonly initiator: 'a' | 'b';
  /** Endpoints A should send to (direct/holepunch), best first; empty for relay. */
  readonly toB: readonly Endpoint[];
  /** Endpoints B should send to. */
  readonly toA: readonly Endpoint[];
  /** The relay: the path for kind 'relay', the fallback otherwise (if any RS can serve both ends). */
  readonly relay?: RelayChoice;
  /** Why this plan, for logs and the web UI. */
  readonly reason: string;
}

/** Global unicast per RFC 4291/6890, roughly: not private, CGNAT, loopback, link-local or ULA. */
export function isGlobal(addr: string): boolean {
  const b = ipToBytes(addr);
  if (b.length === 4) {
    const [x, y] = [b[0]!, b[1]!];
    if (x === 10 || x === 127 || x === 0 || x >= 224) return false;
    if (x === 172 && y >= 16 && y <= 31) return false;
    if (x === 192 && y === 168) return false;
    if (x === 169 && y === 254) return false;
    if (x === 100 && y >= 64 && y <= 127) return false; // RFC 6598 CGNAT
    return true;
  }
  if (b[0] === 0xfe && (b[1]! & 0xc0) === 0x80) return false; // link-local
  if ((b[0]! & 0xfe) === 0xfc) return false; // ULA
  if (b.every((v, i) => (i < 15 ? v === 0 : v <= 1))) return false; // :: and ::1
  return true;
}

/** How an end can be reached over one family. */
interface Reach {
  /** Directly reachable at this endpoint (no NAT in the way). */
  readonly open?: Endpoint;
  /** Behind a NAT: its mapping as observed, and the kind. */
  readonly natted?: { readonly mapping: Endpoint; readonly kind: NatKind };
}

function reach(e: EndView, family: 4 | 6): Reach {
  if (e.observed.family === family) {
    if (e.nat === 'none') return { open: e.observed };
    return { natted: { mapping: e.observed, kind: e.nat } };
  }
  // Not observed in this family: a global local address of it is taken as open (IPv6 is rarely NATed).
  const g = e.locals.find((l) => l.family === family && isGlobal(l.address));
  return g ? { open: g } : {};
}

function families(e: EndView): Set<4 | 6> {
  const s = new Set<4 | 6>([e.observed.family]);
  for (const l of e.locals) if (l.family === 6 ? isGlobal(l.address) : true) s.add(l.family);
  return s;
}

/** A load that was not reported (or too long ago) counts as half full. */
export const UNKNOWN_LOAD = 0.5;
/** An RTT nobody measured: the DC's own RTT to the RS (or this, when even that is unknown) plus UNMEASURED_EXTRA. */
export const UNKNOWN_RTT = 100;
export const UNMEASURED_EXTRA = 50;
/** From this load on, an RS is used only when no other can serve. */
export const BUSY_LOAD = 0.9;

/**
 * The RTT counted for end `e` to relay `r` (docs/protocol.md §3.5, "choosing the RS"): what the end measured with its
 * RS_PINGs; else what it measured to another RS at the same address (instances the vCPE started side by side on one
 * host, whose new instance no end has pinged yet); else the DC's own RTT to the RS plus 50 ms (so measured, near relays
 * win).
 */
function endRtt(e: EndView, r: RelayView, relays: readonly RelayView[]): { ms: number; measured: boolean } {
  const own = e.rsRtt.get(r.id);
  if (own !== undefined) return { ms: own, measured: true };
  let same: number | undefined;
  for (const o of relays) {
    if (o === r) continue;
    const m = e.rsRtt.get(o.id);
    // 65,535: the end found that RS gone (RS failover); says nothing of its neighbours.
    if (m === undefined || m >= 65_535) continue;
    const shares = (r.v4 && o.v4 && r.v4.address === o.v4.address) || (r.v6 && o.v6 && r.v6.address === o.v6.address);
    if (shares && (same === undefined || m < same)) same = m;
  }
  if (same !== undefined) return { ms: same, measured: true };
  return { ms: (r.dcRtt ?? UNKNOWN_RTT) + UNMEASURED_EXTRA, measured: false };
}

/**
 * The RS rule (paper §2.4 leaves it open; ours, docs/protocol.md §3.5): among relays that can serve both ends (each
 * end needs an RS address of a family it has), minimise (rttA + rttB) × (1 + load), each RTT as endRtt counts it, the
 * load as the DC last knew it (reported, plus the tunnels it directed there since); relays at ≥ 90% load, then
 * draining ones, are used only if nothing else can serve. Ties go to the lower ID (stable choice). `explain`, when
 * given, receives every candidate's figures.
 */
export function chooseRelay(a: EndView, b: EndView, relays: readonly RelayView[], explain?: RelayCandidate[]): RelayChoice | undefined {
  const fa = families(a);
  const fb = families(b);
  const pick = (fams: Set<4 | 6>, prefer: 4 | 6, r: RelayView): Endpoint | undefined => {
    const first = prefer === 6 ? r.v6 : r.v4;
    if (first && fams.has(prefer)) return first;
    if (r.v6 && fams.has(6)) return r.v6;
    if (r.v4 && fams.has(4)) return r.v4;
    return undefined;
  };
  let best: { score: number; rank: number; id: string; choice: RelayChoice } | undefined;
  for (const r of relays) {
    const forA = pick(fa, a.observed.family, r);
    const forB = pick(fb, b.observed.family, r);
    if (!forA || !forB) continue;
    const ra = endRtt(a, r, relays);
    const rb = endRtt(b, r, relays);
    const load = r.load ?? UNKNOWN_LOAD;
    const score = (ra.ms + rb.ms) * (1 + load);
    const rank = r.draining ? 2 : load >= BUSY_LOAD ? 1 : 0;
    explain?.push({ id: r.id, rttA: ra.ms, rttB: rb.ms, measuredA: ra.measured, measuredB: rb.measured, load, score, rank });
    const better = !best || rank < best.rank || (rank === best.rank && (score < best.score || (score === best.score && r.id < best.id)));
    if (better) best = { score, rank, id: r.id, choice: { rsId: r.id, forA, forB } };
  }
  return best?.choice;
}

/**
 * The path rule. In order: (1) a common family in which one end is open at a global address (or both at private
 * ones: the DC's own network) → direct, the NATed (or private) end initiates (its first packet opens the way);
 * (2) both behind one NAT (same outside address) → direct over their local
 * addresses; (3) both behind endpoint-independent NATs → hole punching from both sides, relay as fallback;
 * (4) otherwise (a symmetric NAT, or no common family: IPv4-only vs IPv6-only) → relay through a dual-stack RS.
 * IPv6 is preferred when both have it. `a` is the requester (MN), `b` the target (CN).
 */
export function planRoute(a: EndView, b: EndView, relays: readonly RelayView[], explain?: RelayCandidate[]): RoutePlan | undefined {
  const relay = chooseRelay(a, b, relays, explain);
  const withRelay = (p: Omit<RoutePlan, 'relay'>): RoutePlan => (relay ? { ...p, relay } : p);
  const fa = families(a);
  const fb = families(b);
  const common = ([6, 4] as const).filter((f) => fa.has(f) && fb.has(f));

  for (const f of common) {
    const ra = reach(a, f);
    const rb = reach(b, f);
    // "Open" at a private address means the DC sits in the same private network as that end (a DC on the vCPE sees
    // LAN hosts un-NATed): reachable from that network only. Two such ends share it; a global end cannot reach one,
    // but the private end can reach it, so that end starts; a NATed end cannot reach it at all (relay, below).
    const ga = ra.open ? isGlobal(ra.open.address) : false;
    const gb = rb.open ? isGlobal(rb.open.address) : false;
    if (ra.open && rb.open) {
      if (ga === gb) return withRelay({ kind: 'direct', initiator: 'a', toB: [rb.open], toA: [ra.open], reason: `both open over IPv${f}${ga ? '' : ' (one private network)'}` });
      return withRelay({ kind: 'direct', initiator: ga ? 'b' : 'a', toB: [rb.open], toA: [ra.open], reason: `one end open at a private address over IPv${f}: it starts` });
    }
    if (rb.open && gb && ra.natted)
      return withRelay({ kind: 'direct', initiator: 'a', toB: [rb.open], toA: [ra.natted.mapping], reason: `target open over IPv${f}` });
    if (ra.open && ga && rb.natted)
      return withRelay({ kind: 'direct', initiator: 'b', toB: [rb.natted.mapping], toA: [ra.open], reason: `requester open over IPv${f}` });
  }
  for (const f of common) {
    const ra = reach(a, f);
    const rb = reach(b, f);
    if (!ra.natted || !rb.natted) continue;
    if (ra.natted.mapping.address === rb.natted.mapping.address) {
      const la = a.locals.filter((l) => l.family === f);
      const lb = b.locals.filter((l) => l.family === f);
      if (la.length && lb.length)
        return withRelay({ kind: 'direct', initiator: 'a', toB: lb, toA: la, reason: `same NAT over IPv${f}: local addresses` });
    }
    const eim = (k: NatKind) => k === 'eim';
    if (eim(ra.natted.kind) && eim(rb.natted.kind))
      return withRelay({
        kind: 'holepunch',
        initiator: 'b',
        toB: [rb.natted.mapping],
        toA: [ra.natted.mapping],
        reason: `both behind endpoint-independent NATs over IPv${f}`,
      });
  }
  if (!relay) return undefined;
  const why = common.length === 0 ? 'no common address family' : 'a symmetric (or unknown) NAT on the way';
  // Relay: the target's side learns the route first when two DCs are involved, so it initiates (docs/protocol.md §3.5).
  return { kind: 'relay', initiator: 'b', toB: [], toA: [], relay, reason: `relay: ${why}` };
}
