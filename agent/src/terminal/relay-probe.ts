// RS round trips (paper §2.4: the DC should choose the RS by distance): after each registration the terminal pings
// every relay its DC named, three rounds 200 ms apart, keeps the best round trip of each, and reports them to the DC.
// The pings also fetch each RS's return-routability cookie for our address (§3.5), which a tunnel's first bind at that
// RS echoes: without it every relayed tunnel's setup waited one more round trip to the RS (RELAY_CHALLENGE).
import { randomBytes } from 'node:crypto';
import type { Endpoint } from '../types/net.js';
import { formatId } from '../crypto/secp256k1.js';
import { COOKIE_ROTATE_MS } from '../crypto/source-cookie.js';
import { formatEndpoint } from '../protocol/endpoint.js';
import { BIND_COOKIE_BYTES } from '../protocol/relay.js';
import { decodeRsPing, encodeRsPing } from '../protocol/relay.js';
import type { Node } from './node.js';

/** How long after the first ping the round trips are reported (ms). */
const REPORT_AFTER_MS = 1500;
/** Pings unanswered this long are forgotten (ms). */
const PING_TTL_MS = 5000;
/**
 * The round trip reported for an RS that stopped answering (the wire's largest, 65,535 ms): the DC's relay choice
 * (RTT_A + RTT_B) × (1 + load) then takes any RS that answers before it (docs/protocol.md §3.5 "Failover").
 */
export const UNREACHABLE_MS = 65_535;
/** A ping's padding: asks for the RS's cookie in a pong of the same size. */
const ASK_COOKIE = Buffer.alloc(BIND_COOKIE_BYTES);

export class RelayProbe {
  private readonly pings = new Map<bigint, { rs: string; to: string; at: number }>();
  /** Best round trip per RS ID (ms). */
  private readonly rtt = new Map<string, number>();
  /** Each RS endpoint's last cookie for our address, and when it came (performance.now()). */
  private readonly cookies = new Map<string, { bytes: Buffer; at: number }>();

  constructor(
    private readonly send: (d: Uint8Array, to: Endpoint) => void,
    private readonly families: () => ReadonlySet<number>,
  ) {}

  /** Pings `node`'s relays, then reports what answered to its DC. */
  probe(node: Node): void {
    const relays = node.registration?.relays ?? [];
    if (relays.length === 0) return;
    const fams = this.families();
    for (let round = 0; round < 3; round++) {
      setTimeout(() => {
        for (const r of relays) {
          const ep = (fams.has(6) && r.v6) || (fams.has(4) && r.v4) || r.v6 || r.v4;
          if (!ep) continue;
          const nonce = randomBytes(8).readBigUInt64BE(0);
          this.pings.set(nonce, { rs: formatId(r.id), to: formatEndpoint(ep), at: performance.now() });
          this.send(encodeRsPing(0, nonce, 0, ASK_COOKIE), ep);
        }
      }, round * 200).unref();
    }
    setTimeout(() => {
      const rtts = relays.filter((r) => this.rtt.has(formatId(r.id))).map((r) => [Buffer.from(r.id), this.rtt.get(formatId(r.id))!] as const);
      node.reportRtts(rtts).catch(() => undefined);
    }, REPORT_AFTER_MS).unref();
  }

  /** An RS_PING datagram: false when malformed (the caller counts it). */
  onPong(data: Buffer): boolean {
    const p = decodeRsPing(data);
    if (!p.ok || p.value.kind !== 1) return false;
    const s = this.pings.get(p.value.nonce);
    if (!s) return true;
    this.pings.delete(p.value.nonce);
    // A copy: the datagram's buffer is the socket's, reused for the next burst.
    if (p.value.cookie) this.cookies.set(s.to, { bytes: Buffer.from(p.value.cookie), at: performance.now() });
    const rtt = performance.now() - s.at;
    const prev = this.rtt.get(s.rs);
    this.rtt.set(s.rs, prev === undefined || prev === UNREACHABLE_MS ? rtt : Math.min(prev, rtt));
    return true;
  }

  /**
   * A tunnel of `node` found RS `rsId` dead (it answers neither data nor binds): reported as unreachable, so its DC
   * chooses another; resolves once the DC acknowledged it. A later ping it answers reports its real round trip again.
   */
  async unreachable(node: Node, rsId: Uint8Array): Promise<void> {
    this.rtt.set(formatId(rsId), UNREACHABLE_MS);
    await node.reportRtts([[Buffer.from(rsId), UNREACHABLE_MS]]);
  }

  /** Our address changed: the old round trips say nothing about the new path. */
  clear(): void {
    this.rtt.clear();
    this.cookies.clear();
  }

  /** The cookie `rs` gave our address, while it still takes it (it keeps two secrets of COOKIE_ROTATE_MS each). */
  cookieFor(rs: Endpoint): Buffer | undefined {
    const c = this.cookies.get(formatEndpoint(rs));
    return c && performance.now() - c.at < COOKIE_ROTATE_MS - 10_000 ? c.bytes : undefined;
  }

  tick(now: number): void {
    for (const [k, p] of this.pings) if (now - p.at > PING_TTL_MS) this.pings.delete(k);
  }

  /** Best round trip per RS (ms, one decimal). */
  toJSON(): Record<string, number> {
    return Object.fromEntries([...this.rtt].map(([k, v]) => [k, Math.round(v * 10) / 10]));
  }
}
