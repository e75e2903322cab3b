// Requests over UDP: retransmission with exponential backoff under an overall deadline that ends in a typed error
// (DeadlineExceededError). Callers match answers to requests by txid; duplicates and late answers are ignored.
import { randomPublicBytes } from '../crypto/random.js';
import { DeadlineExceededError, NtmError } from '../types/errors.js';

export interface RetryPolicy {
  /** First retransmission after this long (ms). */
  readonly initialMs: number;
  /** Backoff cap (ms). */
  readonly maxMs: number;
  /** Overall deadline (ms) from the first send. */
  readonly deadlineMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = Object.freeze({ initialMs: 500, maxMs: 4000, deadlineMs: 10_000 });

export function newTxid(): bigint {
  return randomPublicBytes(8).readBigUInt64BE(0);
}

/** A pending request was abandoned (the owner closed, or the request was superseded). */
export class CancelledError extends NtmError {
  override readonly name = 'CancelledError';
  override readonly code = 'cancelled';
}

interface Entry<T> {
  readonly what: string;
  readonly send: () => void;
  readonly started: number;
  readonly policy: RetryPolicy;
  attempts: number;
  delay: number;
  timer: NodeJS.Timeout;
  resolve(v: T): void;
  reject(e: Error): void;
}

export class PendingRequests<T> {
  private readonly map = new Map<bigint, Entry<T>>();
  /** Retransmissions sent, for the status counters. */
  retransmissions = 0;

  get size(): number {
    return this.map.size;
  }

  has(txid: bigint): boolean {
    return this.map.has(txid);
  }

  /** Sends now and again with backoff until `resolve(txid, …)` or the deadline. */
  request(txid: bigint, what: string, send: () => void, policy: RetryPolicy = DEFAULT_RETRY): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const e: Entry<T> = {
        what,
        send,
        started: performance.now(),
        policy,
        attempts: 1,
        delay: policy.initialMs,
        timer: setTimeout(() => this.fire(txid), Math.min(policy.initialMs, policy.deadlineMs)),
        resolve,
        reject,
      };
      this.map.set(txid, e);
      send();
    });
  }

  private fire(txid: bigint): void {
    const e = this.map.get(txid);
    if (!e) return;
    const elapsed = performance.now() - e.started;
    if (elapsed >= e.policy.deadlineMs - 1) {
      this.map.delete(txid);
      e.reject(new DeadlineExceededError(e.what, Math.round(elapsed), e.attempts));
      return;
    }
    e.attempts++;
    this.retransmissions++;
    e.send();
    e.delay = Math.min(e.delay * 2, e.policy.maxMs);
    e.timer = setTimeout(() => this.fire(txid), Math.min(e.delay, e.policy.deadlineMs - elapsed));
  }

  /** Completes the request; false when no such request is pending (late or duplicate answer). */
  resolve(txid: bigint, value: T): boolean {
    const e = this.map.get(txid);
    if (!e) return false;
    clearTimeout(e.timer);
    this.map.delete(txid);
    e.resolve(value);
    return true;
  }

  fail(txid: bigint, err: Error): boolean {
    const e = this.map.get(txid);
    if (!e) return false;
    clearTimeout(e.timer);
    this.map.delete(txid);
    e.reject(err);
    return true;
  }

  /**
   * Sends a pending request again now and restarts its backoff from `initialMs` (its deadline stays): the server
   * answered, asking for something the request now carries (a cookie), so the next loss should cost half a second,
   * not the backoff reached so far. False when no such request is pending.
   */
  resendNow(txid: bigint): boolean {
    const e = this.map.get(txid);
    if (!e) return false;
    clearTimeout(e.timer);
    e.attempts++;
    e.send();
    e.delay = e.policy.initialMs;
    const left = e.policy.deadlineMs - (performance.now() - e.started);
    e.timer = setTimeout(() => this.fire(txid), Math.max(0, Math.min(e.delay, left)));
    return true;
  }

  /** Re-sends every pending request now (after a move, the old path is gone: don't wait for the timers). */
  resendAll(): void {
    for (const e of this.map.values()) e.send();
  }

  cancelAll(reason: string): void {
    for (const [txid, e] of this.map) {
      clearTimeout(e.timer);
      this.map.delete(txid);
      e.reject(new CancelledError(`${e.what}: ${reason}`));
    }
  }
}
