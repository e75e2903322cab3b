// Per-source token buckets (as wireguard-go's ratelimiter/): how often one source may make the server do something
// expensive. The DC rations first-time registrations (each costs an ECDH before its MAC can be checked, and each that
// passes takes a virtual address: an open DC without this was drained of its /24 in 3 s from one address, issue 11
// #4, #5); the RS rations binds that reach a signature check and new tunnels; a terminal rations tunnel handshakes
// it answers (each an ECDH). A source is an IPv4 address or an IPv6 /64 (a host picks any address in its /64).
// Memory is bounded: at `maxSources`, buckets that have refilled are forgotten; if none has, new sources are refused
// until one does (under a flood from everywhere, newcomers wait; what is already established never does).
import type { Endpoint } from '../types/net.js';

export interface SourceLimitPolicy {
  /** Requests a source may make at once. */
  readonly burst: number;
  /** Sustained requests per minute per source. */
  readonly perMinute: number;
  readonly maxSources: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export function sourceKey(ep: Endpoint): string {
  if (ep.family === 4) return ep.address;
  const a = ep.address.toLowerCase();
  const [head = '', tail] = a.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...new Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

export class SourceLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;

  constructor(private readonly policy: SourceLimitPolicy) {
    this.perMs = policy.perMinute / 60_000;
  }

  /** Takes one token for `from` at monotonic time `now` (ms); false: over its limit. */
  take(from: Endpoint, now: number): boolean {
    const key = sourceKey(from);
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.policy.maxSources && !this.sweep(now)) return false;
      b = { tokens: this.policy.burst, at: now };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.policy.burst, b.tokens + (now - b.at) * this.perMs);
      b.at = now;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Forgets buckets that have refilled (they hold nothing a new one would not); whether room was made. */
  private sweep(now: number): boolean {
    for (const [k, b] of this.buckets) if (b.tokens + (now - b.at) * this.perMs >= this.policy.burst) this.buckets.delete(k);
    return this.buckets.size < this.policy.maxSources;
  }

  get size(): number {
    return this.buckets.size;
  }
}

/**
 * One token bucket: the DC's refusals answered for requests over their source's limit (such an answer must be
 * authenticated, docs/protocol.md §3.2, which costs the ECDH the per-source limit is there to ration: this bounds that
 * cost whatever the number of sources), a tunnel's handshakes answered (terminal/tunnel.ts).
 */
export class TokenBucket {
  private tokens: number;
  private at = -Infinity;

  constructor(
    private readonly burst: number,
    private readonly perS: number,
  ) {
    this.tokens = burst;
  }

  /** Takes one token at monotonic time `now` (ms); false: none left. */
  take(now: number): boolean {
    if (this.at !== -Infinity) this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) * this.perS) / 1000);
    this.at = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/**
 * Whether a server is under load (wireguard-go's IsUnderLoad, by rate rather than queue length: one event loop has no
 * queue to measure): more than `perSecond` expensive requests asked for in the last second, and for one second after.
 */
export class LoadMeter {
  private windowStart = 0;
  private inWindow = 0;
  private lastWindow = 0;
  private loadedUntil = -Infinity;

  constructor(private readonly perSecond: number) {}

  /** Counts one request that would cost the expensive operation; returns whether the server is now under load. */
  note(now: number): boolean {
    if (now - this.windowStart >= 1000) {
      this.lastWindow = now - this.windowStart >= 2000 ? 0 : this.inWindow;
      this.windowStart = now;
      this.inWindow = 0;
    }
    this.inWindow++;
    // The last window weighted by how much of it is still within the last second: a sliding second.
    const recent = this.inWindow + this.lastWindow * Math.max(0, 1 - (now - this.windowStart) / 1000);
    if (recent > this.perSecond) this.loadedUntil = now + 1000;
    return now < this.loadedUntil;
  }

  underLoad(now: number): boolean {
    return now < this.loadedUntil;
  }
}
