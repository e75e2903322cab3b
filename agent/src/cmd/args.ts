// Command-line parsing for `ntm`: flags map to config keys, so every flag is also a documented config key.
import { InputError } from '../types/errors.js';

export interface Parsed {
  readonly positional: string[];
  /** Flag name (without dashes) → values in order; boolean flags get "true". */
  readonly flags: Map<string, string[]>;
}

/** `--a b --c=d --flag pos`: a flag takes a value unless it is listed in `booleans` or followed by another flag. */
export function parseArgs(argv: readonly string[], booleans: readonly string[] = []): Parsed {
  const positional: string[] = [];
  const flags = new Map<string, string[]>();
  const add = (k: string, v: string) => flags.set(k, [...(flags.get(k) ?? []), v]);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('--') || a === '--') {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    if (eq > 0) {
      add(a.slice(2, eq), a.slice(eq + 1));
      continue;
    }
    const name = a.slice(2);
    if (booleans.includes(name)) {
      add(name, 'true');
      continue;
    }
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) throw new InputError(`--${name} needs a value`);
    add(name, next);
    i++;
  }
  return { positional, flags };
}

export function one(p: Parsed, name: string): string | undefined {
  const v = p.flags.get(name);
  if (v && v.length > 1) throw new InputError(`--${name} given more than once`);
  return v?.[0];
}

export function has(p: Parsed, name: string): boolean {
  return p.flags.has(name);
}

/** Collects config overrides: `--set section.key=value` plus the role's own flag → key table. */
export function overrides(p: Parsed, table: Record<string, string>, allowed: readonly string[] = []): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of p.flags.get('set') ?? []) {
    const eq = s.indexOf('=');
    if (eq < 0) throw new InputError(`--set needs key=value, got ${s}`);
    out[s.slice(0, eq)] = s.slice(eq + 1);
  }
  for (const [flag, key] of Object.entries(table)) {
    const v = p.flags.get(flag);
    if (!v) continue;
    out[key] = v.length > 1 ? v : v[0];
  }
  const known = new Set([...Object.keys(table), 'set', 'config', 'help', ...allowed]);
  for (const f of p.flags.keys()) if (!known.has(f)) throw new InputError(`unknown option --${f} (see --help)`);
  return out;
}
