// The netns testbed's public API for tests, benchmarks and the demo: bring a topology up, use its hosts, tear it down.
import type { UpOptions } from './plan.js';
import { type DownReport, teardown, Testbed } from './testbed.js';

export { CommandError, TestbedError, TopologyError } from './errors.js';
export { type Cidr, type Family, formatEndpoint } from './ip.js';
export type { DirectedPair, Impairment, UpOptions } from './plan.js';
export { nsName } from './plan.js';
export type { EmulatorStats, PairStats } from './emulator.js';
export {
  DEFAULT_PREFIX,
  type DownReport,
  type EmulatorStatus,
  type ExecOptions,
  type ExecResult,
  type HostStatus,
  knownPrefixes,
  realtime,
  type SpawnOptions,
  teardown,
  teardownAll,
  Testbed,
  type TestbedStatus,
  uniquePrefix,
} from './testbed.js';
export { listTopologies, loadTopology, type NatKind, parseTopology, type Topology } from './topology.js';

/** Brings a topology ("paper", "household" or a path to a JSON file) up in fresh namespaces. */
export function up(topology: string, opts?: UpOptions): Promise<Testbed> {
  return Testbed.up(topology, opts);
}

/** A handle on a testbed that another process brought up. */
export function attach(prefix: string): Testbed {
  return Testbed.attach(prefix);
}

/** Tears a prefix down, whether or not its state file survived. */
export function down(prefix: string): DownReport {
  return teardown(prefix);
}
