// The emulator's timing core: per-pair FIFO delay lines and a scheduler that releases packets on time (±tens of µs).
// Node's timers are millisecond-coarse and fire late, so the scheduler sleeps on a timer until shortly before the next
// deadline and then spins on setImmediate (which still lets the poll phase take in new packets) reading hrtime.

export type Release<T> = (item: T, lateNs: bigint) => void;

/** Packets of one direction of one pair, each held until its due time. Single-threaded: only the event loop touches it. */
export class DelayLine<T> {
  private items: T[] = [];
  private dues: bigint[] = [];
  private head = 0;
  private lastDue = 0n;

  constructor(
    readonly delayNs: bigint,
    readonly jitterNs: bigint,
    /** With jitter: let packets overtake each other. Otherwise a packet never leaves before its predecessor. */
    readonly reorder: boolean,
    readonly release: Release<T>,
    private readonly random: () => number = Math.random,
  ) {}

  get length(): number {
    return this.items.length - this.head;
  }

  /** Queues `item` arriving at `now`; returns its due time. */
  push(item: T, now: bigint): bigint {
    let due = now + this.delayNs;
    if (this.jitterNs > 0n) {
      due += BigInt(Math.round((this.random() * 2 - 1) * Number(this.jitterNs)));
      if (due < now) due = now;
    }
    if (!this.reorder || this.jitterNs === 0n) {
      if (due < this.lastDue) due = this.lastDue;
      this.lastDue = due;
      this.items.push(item);
      this.dues.push(due);
      return due;
    }
    // Sorted insert after equal dues, so equal-time packets keep their arrival order.
    let lo = this.head;
    let hi = this.dues.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.dues[mid] ?? 0n) <= due) lo = mid + 1;
      else hi = mid;
    }
    this.items.splice(lo, 0, item);
    this.dues.splice(lo, 0, due);
    return due;
  }

  nextDue(): bigint | undefined {
    return this.head < this.dues.length ? this.dues[this.head] : undefined;
  }

  /** Releases, in order, everything due by `now`; returns how many. */
  releaseDue(now: bigint): number {
    let n = 0;
    while (this.head < this.dues.length) {
      const due = this.dues[this.head] ?? 0n;
      if (due > now) break;
      const item = this.items[this.head] as T;
      this.items[this.head] = undefined as T;
      this.head++;
      n++;
      this.release(item, now - due);
    }
    // Compact now and then instead of shifting per packet.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.dues = this.dues.slice(this.head);
      this.head = 0;
    }
    return n;
  }
}

export interface SchedulerOptions {
  /** How long before a deadline the timer hands over to spinning. Covers setTimeout's lateness. */
  spinNs?: bigint;
  /** Below this, busy-wait synchronously instead of going round the event loop. */
  busyNs?: bigint;
  now?: () => bigint;
}

/** What the scheduler needs of a line, whatever it holds. */
export interface Releasable {
  nextDue(): bigint | undefined;
  releaseDue(now: bigint): number;
}

/** Drives a set of delay lines from one event loop; call kick(due) after every push. */
export class Scheduler {
  private timer: NodeJS.Timeout | undefined;
  private timerDue = 0n;
  private spinning = false;
  private readonly spinNs: bigint;
  private readonly busyNs: bigint;
  private readonly now: () => bigint;

  constructor(
    private readonly lines: readonly Releasable[],
    opts: SchedulerOptions = {},
  ) {
    this.spinNs = opts.spinNs ?? 2_000_000n;
    this.busyNs = opts.busyNs ?? 100_000n;
    this.now = opts.now ?? process.hrtime.bigint;
  }

  kick(due: bigint): void {
    if (this.spinning) return;
    if (this.timer !== undefined && due >= this.timerDue) return;
    this.arm();
  }

  private readonly tick = (): void => {
    this.timer = undefined;
    this.spinning = false;
    for (;;) {
      const now = this.now();
      for (const l of this.lines) l.releaseDue(now);
      const next = this.earliest();
      if (next === undefined) return;
      const rem = next - this.now();
      if (rem > this.busyNs) break;
      while (this.now() < next) {
        // busy-wait the last few microseconds
      }
    }
    this.arm();
  };

  private earliest(): bigint | undefined {
    let best: bigint | undefined;
    for (const l of this.lines) {
      const d = l.nextDue();
      if (d !== undefined && (best === undefined || d < best)) best = d;
    }
    return best;
  }

  private arm(): void {
    const next = this.earliest();
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (next === undefined) return;
    const rem = next - this.now();
    if (rem <= this.spinNs) {
      this.spinning = true;
      setImmediate(this.tick);
      return;
    }
    this.timerDue = next;
    this.timer = setTimeout(this.tick, Number((rem - this.spinNs) / 1_000_000n));
  }
}
