// Structured logging: one JSON object per line on stderr (machine-readable for an ISP's collectors, greppable by
// humans). An error is logged once, where it is handled, with its context (STYLE habit 5).

export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, ctx?: Record<string, unknown>): void;
  info(msg: string, ctx?: Record<string, unknown>): void;
  warn(msg: string, ctx?: Record<string, unknown>): void;
  error(msg: string, ctx?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

function plain(v: unknown): unknown {
  if (v instanceof Error) return { name: v.name, message: v.message };
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  return v;
}

export function createLogger(level: Level | string = 'info', base: Record<string, unknown> = {}, sink: (line: string) => void = (l) => process.stderr.write(l + '\n')): Logger {
  const min = ORDER[(level as Level) in ORDER ? (level as Level) : 'info'];
  const emit = (lvl: Level, msg: string, ctx?: Record<string, unknown>): void => {
    if (ORDER[lvl] < min) return;
    const rec: Record<string, unknown> = { t: new Date().toISOString(), level: lvl, msg, ...base };
    if (ctx) for (const [k, v] of Object.entries(ctx)) rec[k] = plain(v);
    sink(JSON.stringify(rec));
  };
  return {
    debug: (m, c) => emit('debug', m, c),
    info: (m, c) => emit('info', m, c),
    warn: (m, c) => emit('warn', m, c),
    error: (m, c) => emit('error', m, c),
    child: (fields) => createLogger(level, { ...base, ...fields }, sink),
  };
}

/** A logger that drops everything (library default; tests). */
export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLogger,
};

/** Counters by reason (drops, errors): what `ntm status` shows and tests assert. */
export class Counters {
  private readonly m = new Map<string, number>();
  inc(reason: string, n = 1): void {
    this.m.set(reason, (this.m.get(reason) ?? 0) + n);
  }
  get(reason: string): number {
    return this.m.get(reason) ?? 0;
  }
  total(): number {
    let t = 0;
    for (const v of this.m.values()) t += v;
    return t;
  }
  toJSON(): Record<string, number> {
    return Object.fromEntries([...this.m.entries()].sort(([a], [b]) => a.localeCompare(b)));
  }
}

/**
 * Logs a refusal that an attacker can repeat at will (a replay, a flood) at most once per `periodMs` for each kind:
 * the first at once, then one line per period saying how many were held back. Memory: one entry per kind.
 */
export class ThrottledLog {
  private readonly last = new Map<string, { at: number; held: number }>();

  constructor(
    private readonly log: Logger,
    private readonly monotonic: () => number,
    private readonly periodMs = 10_000,
  ) {}

  warn(kind: string, msg: string, ctx: Record<string, unknown> = {}): void {
    const now = this.monotonic();
    const s = this.last.get(kind);
    if (s && now - s.at < this.periodMs) {
      s.held++;
      return;
    }
    this.last.set(kind, { at: now, held: 0 });
    this.log.warn(msg, s && s.held > 0 ? { ...ctx, alsoSince: s.held } : ctx);
  }
}
