// The status page's live charts (issue 14 §3: "traffic per connection over the last minutes"): for each connection (a
// paired device and a phone), the bytes and packets each way in every step of a short window (default 60 steps of
// 5 s), kept in fixed-size rings. Fed from the tunnels' own counters by a timer (AgentRuntime), never from the packet
// path; bounded in connections too, so a household churning phones cannot grow it.
import type { TrafficSeriesView, TrafficView } from '../types/household.js';

/** One connection's counters as its tunnel reports them now (totals since that tunnel began). */
export interface TrafficSample {
  /** Identifies the connection across tunnels (the device's and the phone's IDs). */
  readonly key: string;
  readonly device: string;
  readonly peer: string;
  readonly peerName: string;
  /**
   * The tunnel these totals belong to: a different object is a new tunnel, whose totals started from zero (the
   * previous tunnel's traffic since the last step is lost: at most one step of a connection that was replaced).
   */
  readonly tunnel: object;
  readonly txBytes: number;
  readonly rxBytes: number;
  readonly txPackets: number;
  readonly rxPackets: number;
}

export interface TrafficHistoryOptions {
  /** Length of a step (ms); default 5000. */
  readonly stepMs?: number;
  /** Steps kept; default 60 (5 minutes at 5 s). */
  readonly points?: number;
  /** Connections kept at most; default 64. Beyond it, new connections are not charted until old ones age out. */
  readonly maxConnections?: number;
}

const FIELDS = ['txBytes', 'rxBytes', 'txPackets', 'rxPackets'] as const;
type Field = (typeof FIELDS)[number];

interface Connection {
  device: string;
  peer: string;
  peerName: string;
  /** The tunnel last seen and its totals then; undefined while the connection has no tunnel. */
  tunnel: object | undefined;
  last: Record<Field, number>;
  /** One ring per field, indexed like the history's `head`. */
  readonly rings: Record<Field, Float64Array>;
}

export class TrafficHistory {
  readonly stepMs: number;
  readonly points: number;
  private readonly maxConnections: number;
  private readonly conns = new Map<string, Connection>();
  /** The ring slot of the newest step. */
  private head = 0;
  private lastAt = 0;
  /** Connections seen but not charted (the bound was reached): a count for diagnosis. */
  untracked = 0;

  constructor(o: TrafficHistoryOptions = {}) {
    this.stepMs = o.stepMs ?? 5000;
    this.points = o.points ?? 60;
    this.maxConnections = o.maxConnections ?? 64;
  }

  /**
   * Closes a step at `now` with the connections' current totals. A step that came late (the event loop was held up
   * for more than a step) leaves empty steps before it, so the time axis stays true.
   */
  sample(now: number, current: readonly TrafficSample[]): void {
    const steps = this.lastAt === 0 ? 1 : Math.min(this.points, Math.max(1, Math.round((now - this.lastAt) / this.stepMs)));
    for (let i = 0; i < steps; i++) {
      this.head = (this.head + 1) % this.points;
      for (const c of this.conns.values()) for (const f of FIELDS) c.rings[f][this.head] = 0;
    }
    this.lastAt = now;
    const seen = new Set<string>();
    for (const s of current) {
      const c = this.conns.get(s.key) ?? this.track(s);
      if (!c) continue;
      seen.add(s.key);
      const fresh = c.tunnel !== s.tunnel;
      for (const f of FIELDS) {
        c.rings[f][this.head] = fresh ? s[f] : Math.max(0, s[f] - c.last[f]);
        c.last[f] = s[f];
      }
      c.tunnel = s.tunnel;
      c.device = s.device;
      c.peerName = s.peerName;
    }
    for (const [key, c] of this.conns) {
      if (seen.has(key)) continue;
      c.tunnel = undefined;
      if (this.empty(c)) this.conns.delete(key);
    }
  }

  view(): TrafficView {
    const order = (f: Float64Array): number[] => {
      const out = new Array<number>(this.points);
      for (let i = 0; i < this.points; i++) out[i] = f[(this.head + 1 + i) % this.points]!;
      return out;
    };
    const connections: TrafficSeriesView[] = [...this.conns.values()]
      .map((c) => ({
        device: c.device,
        peer: c.peer,
        peerName: c.peerName,
        connected: c.tunnel !== undefined,
        txBytes: order(c.rings.txBytes),
        rxBytes: order(c.rings.rxBytes),
        txPackets: order(c.rings.txPackets),
        rxPackets: order(c.rings.rxPackets),
      }))
      .sort((a, b) => a.device.localeCompare(b.device) || a.peerName.localeCompare(b.peerName));
    return { stepS: this.stepMs / 1000, points: this.points, end: this.lastAt ? new Date(this.lastAt).toISOString() : null, connections };
  }

  private track(s: TrafficSample): Connection | undefined {
    if (this.conns.size >= this.maxConnections) {
      this.untracked++;
      return undefined;
    }
    const ring = () => new Float64Array(this.points);
    const c: Connection = {
      device: s.device,
      peer: s.peer,
      peerName: s.peerName,
      tunnel: undefined,
      last: { txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0 },
      rings: { txBytes: ring(), rxBytes: ring(), txPackets: ring(), rxPackets: ring() },
    };
    this.conns.set(s.key, c);
    return c;
  }

  private empty(c: Connection): boolean {
    return FIELDS.every((f) => c.rings[f].every((x) => x === 0));
  }
}
