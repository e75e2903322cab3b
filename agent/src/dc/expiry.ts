// Address leases that end (issue 11 #5): on an open DC anyone may take an address, so addresses of terminals gone for
// long (dc.expireAfterS of the DC's service time, dc/terminals.ts) return to the pool, or the pool only ever fills. A
// terminal that comes back registers as a new one and gets an address again, maybe another; its Node Transactions
// stay in the registry, which records identities, not leases. Terminals the DC's owner keeps (a household's own
// devices: DcServerOptions.keepLease) never expire. A revoked terminal's revocation outlives its lease (dc_revoked).
import type { DcCore } from './core.js';
import type { ControlChannel } from './channel.js';
import type { TerminalRecord } from './terminals.js';

/** How often the service clock is written (ms of monotonic time): what a kill -9 may take off every lease's age. */
const SERVICE_SAVE_MS = 10_000;

/** At most this many expired IDs are named in the log line of one sweep (the count is always there). */
const LOGGED_IDS = 20;

export class LeaseExpiry {
  /** Monotonic ms of the next sweep. */
  private nextAt = -Infinity;
  private nextSaveAt = 0;

  constructor(
    private readonly dc: DcCore,
    private readonly channel: ControlChannel,
  ) {}

  /** Called every second; sweeps every quarter of the lease (1 s to 60 s): a lease ends at most that late. */
  tick(): void {
    const { dc } = this;
    const ttl = dc.config.expireAfterS * 1000;
    // With workers (issue 15) a worker's records of terminals another one serves are stale: it could end a lease that
    // is being renewed elsewhere. Not built: leases do not expire while dc.workers > 1.
    if (ttl <= 0 || dc.opts.worker) return;
    const mono = dc.clock.monotonic();
    if (mono >= this.nextSaveAt) {
      this.nextSaveAt = mono + SERVICE_SAVE_MS;
      dc.terminals.saveService();
      dc.commit.schedule();
    }
    if (mono < this.nextAt) return;
    this.nextAt = mono + Math.min(60_000, Math.max(1000, ttl / 4));
    const service = dc.terminals.serviceNow();
    const expired: TerminalRecord[] = [];
    let renewed = 0;
    for (const rec of dc.terminals.byId.values()) {
      if (service - rec.seenService > ttl && !dc.opts.keepLease?.(rec.id)) expired.push(rec);
      else if (rec.seenService - rec.seenSaved > ttl / 10) {
        // Renewed by control packets alone (keep-alives): written now and then, so a restart does not shorten it much.
        dc.terminals.touch(rec);
        renewed++;
      }
    }
    if (expired.length === 0 && renewed === 0) return;
    const now = dc.clock.now();
    for (const rec of expired) {
      this.channel.drop(rec);
      dc.terminals.release(rec, now);
    }
    if (expired.length > 0) {
      dc.counts.inc('leases-expired', expired.length);
      dc.log.info('address leases expired: the addresses return to the pool', {
        count: expired.length,
        afterS: dc.config.expireAfterS,
        ids: expired.slice(0, LOGGED_IDS).map((r) => r.id),
        free: dc.terminals.capacity - dc.terminals.size,
      });
    }
    dc.commit.schedule();
  }
}
