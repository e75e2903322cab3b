// Timestamps of our TUNNEL_REQUESTs that only go up (issue 11, item 3). The responder refuses a request whose TAI64N
// is not later than the last it accepted on that tunnel (docs/protocol.md §3.4; WireGuard's anti-replay of
// initiations, whitepaper §5.1), so a wall clock that goes back — NTP correcting a clock that booted in 2046, a
// dead RTC battery — would get every rekey refused until the tunnel dies. The value is the wall clock clamped to
// grow past the last one issued, and survives restarts: a ceiling reserved ahead of use is stored in a file, and
// after a restart numbering resumes from it. The file is written when use passes the ceiling (at most once per
// RESERVE_MS of use), never per handshake, and atomically (rename): a kill -9 leaves the old or the new ceiling.
// The responder's side needs no file: tunnel ids are random per Route Direction and bound into the handshake's
// prologue, so a request recorded before a restart matches no tunnel after it.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Logger } from '../util/log.js';

/** Its file's name in a terminal's (or agent's) data directory. */
export const HANDSHAKE_CLOCK_FILE = 'handshake-clock.json';
/** How far ahead of the last issued value the stored ceiling lies (ms). */
export const RESERVE_MS = 10 * 60_000;
/** Each value is at least this much (ms) after the previous one: 10 µs, well above a double's resolution here. */
const STEP_MS = 0.01;
/** A wall clock this far behind the last value is worth a log line (ms); less is ordinary NTP slewing. */
const NOTABLE_MS = 1000;

export class HandshakeClock {
  #last: number;
  #ceiling: number;
  #behindLogged = false;

  /**
   * `file`: where the ceiling is kept (undefined: memory only, for tests and embedded hosts). A missing file starts
   * from the wall clock; an unreadable one is an error (starting lower could have requests refused).
   */
  constructor(
    private readonly file: string | undefined,
    private readonly log?: Logger,
    private readonly wall: () => number = Date.now,
  ) {
    let stored = 0;
    if (file !== undefined) {
      try {
        stored = Number(JSON.parse(readFileSync(file, 'utf8')).ceilingMs);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      if (!Number.isFinite(stored)) throw new RangeError(`${file}: no ceilingMs number`);
    }
    this.#last = stored;
    this.#ceiling = stored;
    const now = this.wall();
    if (stored - now > NOTABLE_MS) {
      this.log?.warn('wall clock is behind the last handshake timestamp stored; tunnel handshakes continue from the stored one', { behindMs: Math.round(stored - now), file });
      this.#behindLogged = true;
    }
  }

  /** The next handshake timestamp (ms since the Unix epoch, fractional): greater than every one issued before. */
  next(): number {
    const now = this.wall();
    const v = Math.max(now, this.#last + STEP_MS);
    if (now < this.#last - NOTABLE_MS && !this.#behindLogged) {
      this.log?.warn('wall clock went back; tunnel handshakes keep counting up from the last timestamp', { backMs: Math.round(this.#last - now) });
      this.#behindLogged = true;
    } else if (now >= this.#last) this.#behindLogged = false;
    this.#last = v;
    if (v >= this.#ceiling) this.reserve(v + RESERVE_MS);
    return v;
  }

  private reserve(ceiling: number): void {
    this.#ceiling = ceiling;
    if (this.file === undefined) return;
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, `${JSON.stringify({ ceilingMs: ceiling })}\n`, { mode: 0o600 });
    renameSync(tmp, this.file);
  }
}
