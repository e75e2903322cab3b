// RS round trips (paper §2.4: the DC should choose the RS by distance): after each registration the terminal pings
// every relay its DC named, three rounds 200 ms apart, keeps the best round trip of each, and reports them to the DC.
import { randomBytes } from 'node:crypto';
import type { Endpoint } from '../types/net.js';
import { formatId } from '../crypto/secp256k1.js';
import { decodeRsPing, encodeRsPing } from '../protocol/relay.js';
import type { Node } from './node.js';

/** How long after the first ping the round trips are reported (ms). */
const REPORT_AFTER_MS = 1500;
/** Pings unanswered this long are forgotten (ms). */
const PING_TTL_MS = 5000;

export class RelayProbe {
  private readonly pings = new Map<bigint, { rs: string; at: number }>();
  /** Best round trip per RS ID (ms). */
  private readonly rtt = new Map<string, number>();

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
          this.pings.set(nonce, { rs: formatId(r.id), at: performance.now() });
          this.send(encodeRsPing(0, nonce), ep);
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
    const rtt = performance.now() - s.at;
    const prev = this.rtt.get(s.rs);
    this.rtt.set(s.rs, prev === undefined ? rtt : Math.min(prev, rtt));
    return true;
  }

  /** Our address changed: the old round trips say nothing about the new path. */
  clear(): void {
    this.rtt.clear();
  }

  tick(now: number): void {
    for (const [k, p] of this.pings) if (now - p.at > PING_TTL_MS) this.pings.delete(k);
  }

  /** Best round trip per RS (ms, one decimal). */
  toJSON(): Record<string, number> {
    return Object.fromEntries([...this.rtt].map(([k, v]) => [k, Math.round(v * 10) / 10]));
  }
}
