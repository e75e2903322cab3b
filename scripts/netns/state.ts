// The state file of a running testbed (/run/ntm-testbed/<prefix>/state.json), so the CLI and crashed runs can find it again.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { NatKind } from './topology.js';
import type { Impairment } from './plan.js';

/** Overridable so unprivileged unit runs can point it elsewhere. */
export const STATE_ROOT = process.env.NTM_TESTBED_STATE_DIR ?? '/run/ntm-testbed';

export interface EmulatorState {
  readonly router: string;
  readonly ns: string;
  readonly pid: number;
  readonly configFile: string;
  readonly statsFile: string;
  readonly logFile: string;
}

export interface TestbedState {
  readonly version: 1;
  readonly prefix: string;
  readonly topology: string;
  readonly topologyFile: string;
  readonly column: string;
  readonly delays: boolean;
  readonly nat: Readonly<Record<string, NatKind>>;
  readonly impair: Readonly<Record<string, Impairment>>;
  /** Host → its active uplink network, for hosts that have uplinks. */
  readonly uplinks: Readonly<Record<string, string>>;
  readonly emulators: readonly EmulatorState[];
  readonly phase: 'creating' | 'up';
  readonly createdAt: string;
  readonly ownerPid: number;
}

export function stateDir(prefix: string): string {
  return join(STATE_ROOT, prefix);
}

export function readState(prefix: string): TestbedState | null {
  try {
    return JSON.parse(readFileSync(join(stateDir(prefix), 'state.json'), 'utf8')) as TestbedState;
  } catch {
    return null;
  }
}

/** Write-then-rename, so a reader never sees half a file. */
export function writeState(state: TestbedState): void {
  const dir = stateDir(state.prefix);
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `state.json.${process.pid}.tmp`);
  writeFileSync(tmp, JSON.stringify(state, null, 2) + '\n');
  renameSync(tmp, join(dir, 'state.json'));
}

export function removeState(prefix: string): void {
  rmSync(stateDir(prefix), { recursive: true, force: true });
}

export function statePrefixes(): string[] {
  if (!existsSync(STATE_ROOT)) return [];
  return readdirSync(STATE_ROOT).sort();
}
