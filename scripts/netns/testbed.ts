// A running testbed: bringing a topology up in namespaces, running things in its hosts, moving the phone, tearing down.
import { type ChildProcess, type StdioOptions, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestbedError, TopologyError } from './errors.js';
import type { Family } from './ip.js';
import {
  changeNatScript,
  createBatch,
  directedPairs,
  dupRuleset,
  type EmulatorConfig,
  HOST_RE,
  moveScript,
  nfqueueRules,
  nsName,
  PREFIX_RE,
  rebindScript,
  type Resolved,
  resolveOptions,
  setupScript,
  type UpOptions,
} from './plan.js';
import { type EmulatorState, readState, removeState, stateDir, statePrefixes, STATE_ROOT, type TestbedState, writeState } from './state.js';
import { isAlive, killAndWait, listNetns, netnsPids, run, runOk, type RunResult, runSync, sleep } from './sys.js';
import { loadTopology, type NatKind, type Topology } from './topology.js';
import type { EmulatorStats } from './emulator.js';

export type ExecResult = RunResult;

export interface ExecOptions {
  /** Default 30 s; the command is SIGKILLed after it and the result says timedOut. */
  timeoutMs?: number;
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  stdio?: StdioOptions;
}

export interface IfaceStatus {
  name: string;
  state: string;
  addrs: string[];
}

export interface HostStatus {
  host: string;
  ns: string;
  role: string;
  about: string;
  nat: NatKind | undefined;
  uplink: string | undefined;
  ifaces: IfaceStatus[];
}

export interface EmulatorStatus {
  router: string;
  ns: string;
  pid: number;
  alive: boolean;
  stats: EmulatorStats | null;
  logFile: string;
}

export interface TestbedStatus {
  prefix: string;
  topology: string;
  column: string;
  delays: boolean;
  nat: Record<string, NatKind>;
  phase: string;
  createdAt: string;
  hosts: HostStatus[];
  emulators: EmulatorStatus[];
}

/** Default prefix of the command line; tests get generated ones ("nt" + 6 hex digits) so runs never clash. */
export const DEFAULT_PREFIX = 'ntb';
const GENERATED_PREFIX_RE = /^nt[0-9a-f]{6}$/;

/**
 * "nt" + 6 hex digits, or NTM_TESTBED_PREFIX + 6 hex digits: people sharing a machine tell their namespaces apart
 * (and `ip netns` shows whose they are) by starting them with a name of their own.
 */
export function uniquePrefix(): string {
  const base = process.env.NTM_TESTBED_PREFIX || 'nt';
  const prefix = `${base}${randomBytes(3).toString('hex')}`;
  if (!PREFIX_RE.test(prefix)) throw new TestbedError(`NTM_TESTBED_PREFIX "${base}" does not make a valid prefix (${PREFIX_RE.source})`);
  return prefix;
}

function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new TestbedError('the testbed needs root (network namespaces, nft, NFQUEUE)');
}

/** Namespaces that belong to `prefix`: exactly "<prefix>-<host>", so prefix "ntb" never matches "ntb2-mn". */
function prefixNamespaces(prefix: string, all: readonly string[] = listNetns()): string[] {
  return all.filter((n) => n.startsWith(`${prefix}-`) && HOST_RE.test(n.slice(prefix.length + 1)));
}

export interface DownReport {
  prefix: string;
  namespaces: string[];
  killed: number[];
}

/**
 * Tears down everything of `prefix`, with or without its state file: every process in its namespaces, then the
 * namespaces (their links, addresses and rules go with them). Idempotent; synchronous so exit handlers can use it.
 */
export function teardown(prefix: string): DownReport {
  if (!PREFIX_RE.test(prefix)) throw new TestbedError(`"${prefix}" is not a testbed prefix (${PREFIX_RE.source})`);
  const namespaces = prefixNamespaces(prefix);
  const state = readState(prefix);
  const pids = new Set<number>();
  for (const ns of namespaces) for (const pid of netnsPids(ns)) pids.add(pid);
  // An emulator whose namespace is already gone would not show up in `ip netns pids`.
  for (const e of state?.emulators ?? []) if (isAlive(e.pid) && isOurEmulator(e.pid, e.configFile)) pids.add(e.pid);
  const killed = [...pids];
  killAndWait(killed);
  if (namespaces.length > 0) runSync('ip', ['-force', '-batch', '-'], namespaces.map((n) => `netns del ${n}\n`).join(''));
  removeNetnsEtc(prefix);
  removeState(prefix);
  const left = prefixNamespaces(prefix);
  if (left.length > 0) throw new TestbedError(`could not delete namespaces: ${left.join(', ')}`);
  return { prefix, namespaces, killed };
}

/** `ip netns exec` bind-mounts /etc/netns/<ns>/* over /etc (e.g. a host's resolv.conf): remove ours. */
function removeNetnsEtc(prefix: string): void {
  let names: string[];
  try {
    names = readdirSync(NETNS_ETC);
  } catch {
    return;
  }
  for (const n of names) if (n.startsWith(`${prefix}-`)) rmSync(join(NETNS_ETC, n), { recursive: true, force: true });
}

const NETNS_ETC = '/etc/netns';

/** The pid still runs this testbed's emulator (and is not a reused pid). */
function isOurEmulator(pid: number, configFile: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(configFile);
  } catch {
    return false;
  }
}

/** Every prefix that looks like ours: state directories, the default prefix and generated ones. */
export function knownPrefixes(): string[] {
  const prefixes = new Set(statePrefixes().filter((p) => PREFIX_RE.test(p)));
  for (const ns of listNetns()) {
    const dash = ns.indexOf('-');
    const p = ns.slice(0, dash);
    if (dash > 0 && (p === DEFAULT_PREFIX || GENERATED_PREFIX_RE.test(p)) && HOST_RE.test(ns.slice(dash + 1))) prefixes.add(p);
  }
  return [...prefixes].sort();
}

export function teardownAll(): DownReport[] {
  return knownPrefixes().map(teardown);
}

const EMULATOR_JS = join(import.meta.dirname, 'emulator.js');

let realtimeArgv: string[] | undefined;

/**
 * argv prefix running a command under SCHED_FIFO, or nothing where that is not permitted. The emulator needs it: at
 * normal priority its wake-ups come 1-3 ms late whenever other work keeps both cores busy, at SCHED_FIFO they stay
 * well under 1 ms. Its spinning is bounded (only the last 2 ms before a packet is due) and the kernel's RT
 * throttling leaves other tasks at least 5% of the CPU even under a continuous flood.
 */
export function realtime(): string[] {
  if (realtimeArgv === undefined) {
    realtimeArgv = runSync('chrt', ['-f', '10', 'true']).code === 0 ? ['chrt', '-f', '10'] : [];
  }
  return realtimeArgv;
}

export class Testbed {
  private readonly children = new Set<ChildProcess>();
  private downed = false;

  private constructor(
    readonly topology: Topology,
    private state: TestbedState,
  ) {}

  get prefix(): string {
    return this.state.prefix;
  }
  get column(): string {
    return this.state.column;
  }
  get delays(): boolean {
    return this.state.delays;
  }
  get nat(): Readonly<Record<string, NatKind>> {
    return this.state.nat;
  }

  /** Brings `topology` (a shipped name like "paper", or a path) up; on any failure everything made so far is removed. */
  static async up(topology: string, opts: UpOptions = {}): Promise<Testbed> {
    const topo = loadTopology(topology);
    const resolved = resolveOptions(topo, opts);
    const prefix = opts.prefix ?? uniquePrefix();
    if (!PREFIX_RE.test(prefix)) throw new TestbedError(`"${prefix}" is not a valid prefix (${PREFIX_RE.source})`);
    requireRoot();
    const existing = readState(prefix);
    if (existing || prefixNamespaces(prefix).length > 0) {
      throw new TestbedError(
        `prefix "${prefix}" is in use${existing ? ` (topology ${existing.topology})` : ''}; run "scripts/testbed down --name ${prefix}" first`,
      );
    }
    const uplinks: Record<string, string> = {};
    for (const h of topo.hosts.values()) if (h.initialUplink) uplinks[h.name] = h.initialUplink;
    let state: TestbedState = {
      version: 1,
      prefix,
      topology: topo.name,
      topologyFile: topo.file,
      column: resolved.column,
      delays: resolved.delays,
      nat: resolved.nat,
      impair: resolved.impair,
      uplinks,
      emulators: [],
      phase: 'creating',
      createdAt: new Date().toISOString(),
      ownerPid: process.pid,
    };
    // Written before the first namespace exists, so "down --all" finds a half-built testbed after a crash.
    writeState(state);
    try {
      await runOk('ip', ['-batch', '-'], { input: createBatch(topo, prefix) });
      for (const phase of [1, 2] as const) {
        await Promise.all(
          [...topo.hosts.keys()].map((h) => runOk('ip', ['netns', 'exec', nsName(prefix, h), 'sh', '-c', setupScript(topo, h, resolved, uplinks, phase), h])),
        );
      }
      await waitLinksUp(topo, prefix, uplinks);
      const emulators = resolved.delays ? await startEmulators(topo, resolved, prefix) : [];
      state = { ...state, emulators, phase: 'up' };
      writeState(state);
    } catch (e) {
      teardown(prefix);
      throw e;
    }
    return new Testbed(topo, state);
  }

  /** A handle on a testbed brought up elsewhere (another process, the CLI), from its state file. */
  static attach(prefix: string): Testbed {
    const state = readState(prefix);
    if (!state) throw new TestbedError(`no testbed "${prefix}" is up (no state in ${STATE_ROOT}/${prefix})`);
    return new Testbed(loadTopology(state.topologyFile), state);
  }

  hosts(): string[] {
    return [...this.topology.hosts.keys()];
  }

  ns(host: string): string {
    if (!this.topology.hosts.has(host)) throw new TestbedError(`${this.topology.name} has no host "${host}" (hosts: ${this.hosts().join(', ')})`);
    return nsName(this.prefix, host);
  }

  /**
   * The host's configured address of one family (without prefix length). Without `iface`: for a host with uplinks
   * the active uplink's, otherwise the first in file order.
   */
  addr(host: string, family: Family, iface?: string): string {
    this.ns(host);
    let ifaces = this.topology.ifaces.get(host) ?? [];
    const h = this.topology.hosts.get(host);
    const active = h?.uplinks.find((u) => u.network === this.state.uplinks[host]);
    if (iface !== undefined) ifaces = ifaces.filter((i) => i.name === iface);
    else if (active) ifaces = ifaces.filter((i) => i.name === active.iface);
    if (ifaces.length === 0) throw new TestbedError(`${host} has no interface "${iface ?? ''}"`);
    const c = ifaces.flatMap((i) => i.addrs).find((a) => a.family === family);
    if (!c) throw new TestbedError(`${host}${iface ? `:${iface}` : ''} has no IPv${family} address`);
    return c.address;
  }

  /** Runs argv inside the host's namespace and waits; a non-zero exit is a value, not an exception. */
  /**
   * Points the host's resolver at `nameserver` (e.g. a terminal's own DNS listener for NAME.ntm): every later
   * exec/spawn in it sees this /etc/resolv.conf. Removed at down.
   */
  setResolver(host: string, nameserver: string): void {
    const dir = join(NETNS_ETC, this.ns(host));
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'resolv.conf'), `nameserver ${nameserver}\noptions timeout:2 attempts:2\n`);
  }

  exec(host: string, argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    return run('ip', ['netns', 'exec', this.ns(host), ...argv], { timeoutMs: 30_000, ...opts });
  }

  /** Starts argv inside the host's namespace; the process is killed at down() if still running. */
  spawn(host: string, argv: readonly string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.ns(host), ...argv], { stdio: 'pipe', ...opts });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  /** The host's active uplink network, for hosts that have uplinks. */
  uplink(host: string): string | undefined {
    return this.state.uplinks[host];
  }

  /** The "phone changes networks" event: bring the new uplink up, move the default route there, take the others down. */
  async move(host: string, network: string): Promise<void> {
    const h = this.topology.hosts.get(host);
    if (!h) throw new TestbedError(`${this.topology.name} has no host "${host}"`);
    if (h.uplinks.length === 0) throw new TopologyError(`${host} has no uplinks to move between`);
    await runOk('ip', ['netns', 'exec', this.ns(host), 'sh', '-c', moveScript(h, network), host]);
    const iface = h.uplinks.find((u) => u.network === network)?.iface ?? '';
    await waitOperUp(this.ns(host), [iface], Date.now() + 5000);
    const fresh = readState(this.prefix) ?? this.state;
    this.state = { ...fresh, uplinks: { ...fresh.uplinks, [host]: network } };
    writeState(this.state);
  }

  /**
   * The "NAT rebinding" event: NAT router `router` forgets its UDP mappings and gives every flow that goes on a new
   * outside port (`port`, default a fresh one from 20000–59999), as after a mapping timeout or a restart of the NAT.
   * Returns the new outside port.
   */
  async rebindNat(router: string, port = 20_000 + Math.floor(Math.random() * 40_000)): Promise<number> {
    const h = this.topology.hosts.get(router);
    const kind = this.state.nat[router];
    if (!h?.nat || !kind) throw new TestbedError(`${router} is not a NAT router of ${this.topology.name}`);
    await runOk('ip', ['netns', 'exec', this.ns(router), 'sh', '-c', rebindScript(h, kind, port)]);
    return port;
  }

  /** The "NAT changes kind" event: router `router` becomes a NAT of `kind` at once, forgetting every UDP mapping. */
  async changeNat(router: string, kind: NatKind): Promise<void> {
    const h = this.topology.hosts.get(router);
    if (!h?.nat || !this.state.nat[router]) throw new TestbedError(`${router} is not a NAT router of ${this.topology.name}`);
    await runOk('ip', ['netns', 'exec', this.ns(router), 'sh', '-c', changeNatScript(h, kind)]);
    const fresh = readState(this.prefix) ?? this.state;
    this.state = { ...fresh, nat: { ...fresh.nat, [router]: kind } };
    writeState(this.state);
  }

  /** Live status: interfaces and addresses as the kernel has them, NAT kinds, emulator pids and counters. */
  async status(): Promise<TestbedStatus> {
    const hosts = await Promise.all(
      this.hosts().map(async (host): Promise<HostStatus> => {
        const h = this.topology.hosts.get(host);
        const r = await run('ip', ['-n', this.ns(host), '-j', 'addr', 'show']);
        let ifaces: IfaceStatus[] = [];
        if (r.code === 0) {
          const parsed = JSON.parse(r.stdout || '[]') as { ifname: string; operstate: string; addr_info?: { local: string; prefixlen: number; scope: string }[] }[];
          ifaces = parsed
            .filter((i) => i.ifname !== 'lo')
            .map((i) => ({
              name: i.ifname,
              state: i.operstate,
              addrs: (i.addr_info ?? []).filter((a) => a.scope !== 'link').map((a) => `${a.local}/${a.prefixlen}`),
            }));
        }
        return {
          host,
          ns: this.ns(host),
          role: h?.role ?? '?',
          about: h?.about ?? '',
          nat: this.state.nat[host],
          uplink: this.state.uplinks[host],
          ifaces,
        };
      }),
    );
    return {
      prefix: this.prefix,
      topology: this.state.topology,
      column: this.state.column,
      delays: this.state.delays,
      nat: { ...this.state.nat },
      phase: this.state.phase,
      createdAt: this.state.createdAt,
      hosts,
      emulators: await this.emulatorStatus(),
    };
  }

  /** Asks each emulator for fresh counters (SIGUSR1) and reads them. */
  async emulatorStatus(): Promise<EmulatorStatus[]> {
    const out: EmulatorStatus[] = [];
    for (const e of this.state.emulators) {
      const alive = isAlive(e.pid);
      if (alive) {
        const before = statsMtime(e.statsFile);
        process.kill(e.pid, 'SIGUSR1');
        for (let i = 0; i < 50 && statsMtime(e.statsFile) === before; i++) await sleep(10);
      }
      let stats: EmulatorStats | null = null;
      try {
        stats = JSON.parse(readFileSync(e.statsFile, 'utf8')) as EmulatorStats;
      } catch {
        stats = null;
      }
      out.push({ router: e.router, ns: e.ns, pid: e.pid, alive, stats, logFile: e.logFile });
    }
    return out;
  }

  async down(): Promise<DownReport> {
    this.downed = true;
    for (const c of this.children) c.kill('SIGKILL');
    const report = teardown(this.prefix);
    // Reap our own children so the event loop is not held by them.
    await Promise.all([...this.children].map((c) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(null) : c.once('exit', r)))));
    return report;
  }

  get isDown(): boolean {
    return this.downed;
  }
}

function statsMtime(file: string): number {
  return statSync(file, { throwIfNoEntry: false })?.mtimeMs ?? 0;
}

/**
 * Waits until every interface that should be up is operationally up: until the kernel's link watcher has run, a
 * fresh veth has no working qdisc and silently drops what it is given.
 */
async function waitLinksUp(topo: Topology, prefix: string, uplinks: Readonly<Record<string, string>>): Promise<void> {
  const deadline = Date.now() + 5000;
  // An inactive uplink is down on purpose, and so (no carrier) is the other end of its link.
  const inactive = new Set<string>();
  for (const h of topo.hosts.values()) {
    for (const u of h.uplinks) {
      if (u.network === uplinks[h.name]) continue;
      inactive.add(`${h.name}:${u.iface}`);
      const end = topo.ifaces.get(h.name)?.find((i) => i.name === u.iface)?.peer;
      if (end) inactive.add(`${end.host}:${end.iface}`);
    }
  }
  for (const [host, ifaces] of topo.ifaces) {
    const want = ifaces.filter((i) => !inactive.has(`${host}:${i.name}`)).map((i) => i.name);
    await waitOperUp(nsName(prefix, host), want, deadline);
  }
}

async function waitOperUp(ns: string, want: readonly string[], deadline: number): Promise<void> {
  for (;;) {
    const r = await run('ip', ['-n', ns, '-j', 'link', 'show']);
    const links = JSON.parse(r.stdout || '[]') as { ifname: string; operstate: string }[];
    const down = want.filter((n) => links.find((l) => l.ifname === n)?.operstate !== 'UP');
    if (down.length === 0) return;
    if (Date.now() > deadline) throw new TestbedError(`interfaces of ${ns} did not come up: ${down.join(', ')}`);
    await sleep(25);
  }
}

async function startEmulators(topo: Topology, resolved: Resolved, prefix: string): Promise<EmulatorState[]> {
  const dir = stateDir(prefix);
  mkdirSync(dir, { recursive: true });
  const out: EmulatorState[] = [];
  for (const e of topo.emulation) {
    const pairs = directedPairs(topo, e, resolved);
    if (pairs.length === 0) continue;
    const ns = nsName(prefix, e.router);
    const cfg: EmulatorConfig = {
      router: e.router,
      statsFile: join(dir, `emulator-${e.router}.stats.json`),
      readyFile: join(dir, `emulator-${e.router}.ready`),
      pairs,
    };
    const configFile = join(dir, `emulator-${e.router}.json`);
    const logFile = join(dir, `emulator-${e.router}.log`);
    writeFileSync(configFile, JSON.stringify(cfg, null, 2) + '\n');
    let pid = -1;
    if (pairs.some((p) => p.queue >= 0)) {
      const fd = openSync(logFile, 'a');
      // Detached: it outlives the CLI that started it, and a test runner's Ctrl-C does not reach it before down does.
      const child = spawn('ip', ['netns', 'exec', ns, ...realtime(), process.execPath, EMULATOR_JS, configFile], {
        detached: true,
        stdio: ['ignore', fd, fd],
      });
      closeSync(fd);
      child.unref();
      pid = child.pid ?? -1;
      const deadline = Date.now() + 10_000;
      while (!existsSync(cfg.readyFile)) {
        if (child.exitCode !== null || Date.now() > deadline) {
          const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').trim().split('\n').slice(-8).join('\n') : '';
          throw new TestbedError(`the link emulator of ${e.router} did not start:\n${log}`);
        }
        await sleep(20);
      }
      // Queues exist before any rule sends packets to them, so nothing is dropped while it starts.
      await runOk('ip', ['netns', 'exec', ns, 'iptables-restore', '--noflush'], { input: nfqueueRules(pairs) });
      await runOk('ip', ['netns', 'exec', ns, 'ip6tables-restore', '--noflush'], { input: nfqueueRules(pairs) });
    }
    const dup = dupRuleset(pairs);
    if (dup) await runOk('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: dup });
    out.push({ router: e.router, ns, pid, configFile, statsFile: cfg.statsFile, logFile });
  }
  return out;
}
