// The benchmarks of the agent appliance (issue 6 items 4–6, issue 4 item 6), each on the `household` testbed with
// real processes: `ntm agent` on the vCPE, the lamp (and other appliances) paired, a phone enrolled and running
// `ntm up` behind its Wi-Fi NAT (household.ts).
// - throughput: iperf3 phone → lamp through the agent, through wireguard-go (the current release and Debian's) and
//   with no tunnel, interleaved;
// - agent_memory: the agent's VmRSS with 50 paired appliances and 5 live tunnels, idle and under iperf3 load;
// - handover: the phone moves networks during a TCP transfer from the lamp; the interruption of each move.
import { spawn, spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import type { Testbed } from '../../scripts/netns/index.js';
import { withTestbed } from '../lib/testbed.js';
import { withDaemons } from '../lib/ntm.js';
import { connectPhone, iperf, type IperfResult, IPERF_PORT, processCpuSeconds, processMemoryMb, sampleMemory, startHousehold, startIperfServer } from './household.js';
import { startPortForward, startWireguard, WG_BUILT, WG_DEBIAN, wireguardVersion } from './wireguard.js';
import { quantile, round } from './results.js';
import { measureHandover } from './handover.js';

export interface AgentBenchOptions {
  /** Smoke mode: the smallest run that still produces every figure. */
  readonly quick?: boolean;
  /**
   * Throughput only: after the rounds, profile one more TCP run through the agent (perf record -a -g, the Node ends
   * started with --perf-basic-prof so JIT code has names) and write perf's top entries to this file.
   */
  readonly profile?: string;
  readonly log?: (line: string) => void;
}

/** RSS (MB) of `ntm agent` with 50 paired appliances and 5 live tunnels: idle, and under iperf3 load. */
export interface AgentMemoryFigures {
  readonly rss_mb_idle: number;
  readonly rss_mb_load: number;
  /** VmHWM at the end (MB): the most the agent's resident set ever was (while pairing the 50, see the README). */
  readonly rss_mb_peak?: number;
  /** The two readings split into anonymous memory (heaps, buffers) and file pages (the node binary's code). */
  readonly idle_split_mb?: { readonly anon: number; readonly file: number };
  readonly load_split_mb?: { readonly anon: number; readonly file: number };
  readonly paired?: number;
  readonly tunnels?: number;
  /** Received rate of the load (Mbit/s, TCP then UDP through the lamp's tunnel). */
  readonly load_mbps?: { readonly tcp: number; readonly udp: number };
}

/** On `household`: the phone moves networks during a TCP transfer; median interruption of ≥ 10 moves. */
export interface HandoverFigures {
  /** The terminal's own measure (`interruptionsMs` of `ntm status`): from the move until the new path carried. */
  readonly median_ms: number;
  /** The phone–agent RTT the goal (≤ 2 × RTT + 20 ms) is computed from. */
  readonly rtt_ms: number;
  /** At the application: the largest gap between received bytes around each move (median over moves). */
  readonly app_gap_median_ms?: number;
  readonly moves?: number;
  /** Per network moved to: medians of the same figures, and the testbed's nominal vCPE–network RTT. */
  readonly by_network?: Readonly<Record<string, { moves: number; median_ms: number; app_gap_median_ms: number; rtt_ms: number; nominal_rtt_ms: number }>>;
}

export interface PathFigures {
  readonly agent: number;
  /** The current upstream wireguard-go built from source (Debian's when it is not built: `wireguard_go_note` says). */
  readonly wireguard_go: number;
  /** Debian 12's wireguard-go (0.0.20220316), when the current one ran beside it. */
  readonly wireguard_go_debian?: number;
  readonly plain: number;
}

/** The tunnels' figures (no plain path). */
export type TunnelFigures = Omit<PathFigures, 'plain'>;

/** iperf3 phone → appliance through the agent, the two wireguard-go and no tunnel, side by side in one run. */
export interface ThroughputBenchFigures {
  readonly tcp_mbps: PathFigures;
  /** UDP: the received rate at a target rate above every path's ceiling. */
  readonly udp_mbps: PathFigures;
  /** Agent / the current wireguard-go (TCP, medians). */
  readonly tcp_ratio_vs_wireguard_go: number;
  /**
   * The median over rounds of agent / the current wireguard-go in the same round (TCP; the two runs are seconds apart):
   * the comparison a shared machine's drift moves least, beside the ratio of medians above.
   */
  readonly tcp_ratio_vs_wireguard_go_per_round?: number;
  /** Agent / Debian's wireguard-go (TCP, medians). */
  readonly tcp_ratio_vs_wireguard_go_debian?: number;
  readonly udp_ratio_vs_wireguard_go?: number;
  /** The tunnels against no tunnel at all (TCP). */
  readonly tcp_ratio_vs_plain?: TunnelFigures;
  /** UDP datagrams lost at that target rate (median %). */
  readonly udp_loss_pct?: PathFigures;
  /**
   * CPU the two tunnel ends used during the TCP runs (median, % of one core, summed): `ntm agent` + the phone's
   * `ntm up`, or the two wireguard-go processes. Includes the kernel work charged to them (see README).
   */
  readonly tcp_cpu_pct?: TunnelFigures;
  /** The same per Gbit/s carried (median over runs of CPU % / Gbit/s): what a tunnel costs per unit of traffic. */
  readonly tcp_cpu_pct_per_gbps?: TunnelFigures;
  /** Every run's figure, in run order (Mbit/s). */
  readonly runs_mbps?: { readonly tcp: PathFigureLists; readonly udp: PathFigureLists };
  /** Rounds of (agent, wireguard-go, [Debian's wireguard-go,] plain) and seconds per iperf3 run. */
  readonly rounds?: number;
  readonly seconds?: number;
  /** Inner MTU of each path (bytes): the agent's tunnel 1380, wireguard-go set to the same, the plain path 1500. */
  readonly mtu?: PathFigures;
  /** `--version` of each wireguard-go measured. */
  readonly wireguard_go_version?: string;
  readonly wireguard_go_debian_version?: string;
  /** Why `wireguard_go` is Debian's (the current one is not built here). */
  readonly wireguard_go_note?: string;
  /** The machine's load average (1, 5, 15 min) before and after: the machine is shared, only the ratios compare. */
  readonly load_average?: { readonly start: readonly number[]; readonly end: readonly number[] };
}

export interface PathFigureLists {
  readonly agent: readonly number[];
  readonly wireguard_go: readonly number[];
  readonly wireguard_go_debian?: readonly number[];
  readonly plain: readonly number[];
}

type PathName = 'agent' | 'wireguard_go' | 'wireguard_go_debian' | 'plain';
type TunnelName = Exclude<PathName, 'plain'>;

/** Our tunnel's inner MTU (config `agent.mtu` / `terminal.mtu` default). wireguard-go gets the same for the benchmark. */
const INNER_MTU = 1380;
/** TCP MSS and UDP payload that fit INNER_MTU in IPv4 (20 + 20 / 20 + 8 bytes of headers), used on all three paths. */
const TCP_MSS = INNER_MTU - 40;
const UDP_LENGTH = INNER_MTU - 28;
/** UDP target rate: above what any path here carries, so the received rate is the ceiling. */
const UDP_TARGET = '2G';

const median = (xs: readonly number[]): number => quantile(xs, 0.5);
/** `f` of each path measured, under the path's name (paths not measured are left out). */
function perPath<P extends PathName, T>(paths: readonly P[], f: (p: P) => T): Record<P, T> {
  return Object.fromEntries(paths.map((p) => [p, f(p)])) as Record<P, T>;
}
const loadAverage = (): number[] => loadavg().map((x) => round(x, 2));

/** Brings `household` up (without delays: the CPU is what is measured) and runs the paths interleaved. */
export function benchThroughput(opts: AgentBenchOptions = {}): Promise<ThroughputBenchFigures> {
  const log = opts.log ?? (() => undefined);
  const rounds = opts.quick ? 1 : 6;
  const seconds = opts.quick ? 1 : 5;
  const loadStart = loadAverage();
  const builtVersion = wireguardVersion(WG_BUILT);
  const debianVersion = wireguardVersion(WG_DEBIAN) ?? 'unknown';
  // The current wireguard-go where scripts/setup --bench built it; otherwise Debian's stands in, and the JSON says so.
  const note = builtVersion === null ? `the current wireguard-go is not built (${WG_BUILT}: run scripts/setup --bench); wireguard_go is Debian's ${debianVersion}` : undefined;
  const paths: PathName[] = builtVersion === null ? ['agent', 'wireguard_go', 'plain'] : ['agent', 'wireguard_go', 'wireguard_go_debian', 'plain'];
  const tunnels = paths.filter((p): p is TunnelName => p !== 'plain');
  // JIT code is named in perf's report only when Node writes /tmp/perf-<pid>.map (the ends inherit this environment).
  const nodeOptions = process.env.NODE_OPTIONS;
  if (opts.profile) process.env.NODE_OPTIONS = `${nodeOptions ?? ''} --perf-basic-prof`.trim();
  return withTestbed('household', { delays: false }, (tb) =>
    withDaemons('ntm-bench-tput-', log, async ({ dir, started, defer }) => {
      const h = await startHousehold(tb, dir, started, { log });
      const lamp = h.devices[0]!;
      await startIperfServer(tb, 'lamp');
      const { path } = await connectPhone(h, lamp);
      const wg = await startWireguard(tb, dir, INNER_MTU, { binary: builtVersion === null ? WG_DEBIAN : WG_BUILT, slot: 0 });
      defer(() => wg.stop());
      const wgDebian = builtVersion === null ? undefined : await startWireguard(tb, dir, INNER_MTU, { binary: WG_DEBIAN, slot: 1 });
      if (wgDebian) defer(() => wgDebian.stop());
      const fwd = await startPortForward(tb, IPERF_PORT);
      const target: Record<PathName, { address: string; bind?: string }> = {
        agent: { address: lamp.virtualV4 },
        wireguard_go: { address: wg.lampAddress, bind: wg.phoneAddress },
        wireguard_go_debian: wgDebian ? { address: wgDebian.lampAddress, bind: wgDebian.phoneAddress } : { address: '' },
        plain: { address: fwd.lampAddress },
      };
      log(`throughput: agent tunnel ${path} to ${target.agent.address}; wireguard-go (${builtVersion ?? debianVersion}) and ${wgDebian ? `Debian's (${debianVersion})` : 'no other'} to ${wg.lampAddress}; plain to ${target.plain.address} (DNAT)`);
      const run = (p: PathName, udp: boolean, s: number): Promise<IperfResult> => {
        const t = target[p];
        const via = t.bind === undefined ? {} : { bind: t.bind };
        return iperf(tb, 'phone', t.address, udp ? { seconds: s, udp, bitrate: UDP_TARGET, length: UDP_LENGTH, ...via } : { seconds: s, mss: TCP_MSS, ...via });
      };
      if (opts.profile) {
        if (nodeOptions === undefined) delete process.env.NODE_OPTIONS;
        else process.env.NODE_OPTIONS = nodeOptions;
      }
      const ends: Record<TunnelName, readonly number[]> = { agent: [h.agent.proc.pid!, h.phone.proc.pid!], wireguard_go: wg.pids, wireguard_go_debian: wgDebian?.pids ?? [] };
      const cpuOf = (pids: readonly number[]) => pids.reduce((a, pid) => a + processCpuSeconds(pid), 0);
      // Warm-up (not counted): the JIT of both Node ends, ARP, conntrack, wireguard-go's handshake.
      for (const p of paths) await run(p, false, 1);
      const lists = (): Record<PathName, number[]> => ({ agent: [], wireguard_go: [], wireguard_go_debian: [], plain: [] });
      const tcp = lists();
      const udp = lists();
      const loss = lists();
      const cpu = lists();
      const cpuPerGbps = lists();
      for (let r = 0; r < rounds; r++) {
        for (const p of paths) {
          const c0 = p === 'plain' ? 0 : cpuOf(ends[p]);
          const t0 = performance.now();
          const x = await run(p, false, seconds);
          tcp[p].push(x.mbps);
          let tail = '';
          if (p !== 'plain') {
            const pct = (100 * (cpuOf(ends[p]) - c0)) / ((performance.now() - t0) / 1000);
            cpu[p].push(pct);
            cpuPerGbps[p].push(pct / (x.mbps / 1000));
            tail = `, tunnel ends ${pct.toFixed(0)}% CPU`;
          }
          log(`  round ${r + 1} tcp ${p}: ${x.mbps.toFixed(0)} Mbit/s (${x.retransmits} retransmits)${tail}`);
        }
        for (const p of paths) {
          const x = await run(p, true, seconds);
          udp[p].push(x.mbps);
          loss[p].push(x.lossPct ?? NaN);
          log(`  round ${r + 1} udp ${p}: ${x.mbps.toFixed(0)} Mbit/s received of ${x.sentMbps?.toFixed(0)} sent, ${x.lossPct?.toFixed(1)}% lost`);
        }
      }
      // What the two ends' queues did (native readers: bursts, GSO packets cut into segments, MSS learnt).
      const queues = async (who: { call(r: Record<string, unknown>): Promise<unknown> }) =>
        JSON.stringify(((await who.call({ cmd: 'status' })) as { dataplane?: { queues?: unknown } }).dataplane?.queues ?? null);
      log(`throughput: phone queues ${await queues(h.phone)}`);
      log(`throughput: agent queues ${await queues(h.agent)}`);
      // And what its receive TUN did (decrypted TCP segments coalesced into GSO packets: queued, coalesced, writes).
      log(`throughput: agent receive TUN ${JSON.stringify(((await h.agent.call({ cmd: 'status' })) as { dataplane?: { receiveTun?: unknown } }).dataplane?.receiveTun ?? null)}`);
      if (opts.profile) {
        await profileRun(opts.profile, seconds, () => run('agent', false, seconds), [...ends.agent]);
        log(`throughput: the agent's profile is in ${opts.profile}`);
      }
      const med = (m: Record<PathName, number[]>, digits = 1): PathFigures => perPath(paths, (p) => round(median(m[p]), digits)) as unknown as PathFigures;
      const medTunnels = (m: Record<PathName, number[]>, digits = 0): TunnelFigures => perPath(tunnels, (p) => round(median(m[p]), digits)) as unknown as TunnelFigures;
      const ratio = (a: number[], b: number[]): number => round(median(a) / median(b), 3);
      return {
        tcp_mbps: med(tcp),
        udp_mbps: med(udp),
        tcp_ratio_vs_wireguard_go: ratio(tcp.agent, tcp.wireguard_go),
        tcp_ratio_vs_wireguard_go_per_round: round(median(tcp.agent.map((a, i) => a / tcp.wireguard_go[i]!)), 3),
        ...(wgDebian ? { tcp_ratio_vs_wireguard_go_debian: ratio(tcp.agent, tcp.wireguard_go_debian) } : {}),
        udp_ratio_vs_wireguard_go: ratio(udp.agent, udp.wireguard_go),
        tcp_ratio_vs_plain: perPath(tunnels, (p) => ratio(tcp[p], tcp.plain)) as unknown as TunnelFigures,
        udp_loss_pct: med(loss),
        tcp_cpu_pct: medTunnels(cpu),
        tcp_cpu_pct_per_gbps: medTunnels(cpuPerGbps),
        runs_mbps: {
          tcp: perPath(paths, (p) => tcp[p].map((x) => round(x, 0))) as unknown as PathFigureLists,
          udp: perPath(paths, (p) => udp[p].map((x) => round(x, 0))) as unknown as PathFigureLists,
        },
        rounds,
        seconds,
        mtu: perPath(paths, (p) => (p === 'plain' ? 1500 : INNER_MTU)) as unknown as PathFigures,
        wireguard_go_version: builtVersion ?? debianVersion,
        ...(wgDebian ? { wireguard_go_debian_version: debianVersion } : {}),
        ...(note ? { wireguard_go_note: note } : {}),
        load_average: { start: loadStart, end: loadAverage() },
      };
    }),
  );
}

/**
 * Records the two tunnel ends (user and kernel time, the syscalls' and the softirq work done in their context; the
 * machine is shared, so not the whole of it) while `work` runs, and writes perf's top entries (self time by process,
 * object and symbol) to `out`.
 */
async function profileRun(out: string, seconds: number, work: () => Promise<unknown>, pids: readonly number[]): Promise<void> {
  const data = `${out}.data`;
  const rec = spawn('perf', ['record', '-g', '-F', '999', '-p', pids.join(','), '-o', data, '--', 'sleep', String(Math.max(1, seconds - 1))], { stdio: 'ignore' });
  const done = new Promise<void>((r) => rec.once('exit', () => r()));
  await work();
  await done;
  // Self time by process and object (the kernel, the addon, JIT code, node's builtins, libc), then by symbol.
  const report = (sort: string) =>
    spawnSync('perf', ['report', '-i', data, '--stdio', '--no-children', '--sort', sort, '--percent-limit', '0.5', '-g', 'none'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const parts = [report('pid,dso'), report('pid,dso,symbol')];
  // perf pads its columns to the longest symbol it knows: squeeze runs of blanks so the lines stay readable.
  const text = parts.map((r) => `${r.stdout}${r.stderr}`).join('\n').replace(/ {3,}/g, '  ');
  writeFileSync(out, `# perf, the two tunnel ends (pids ${pids.join(', ')}: agent, phone) during one TCP run through the agent\n${text}`);
  rmSync(data, { force: true });
  for (const pid of pids) rmSync(`/tmp/perf-${pid}.map`, { force: true });
}

/**
 * 50 appliances paired (the lamp, then addresses that need not exist on the LAN: pairing by IP creates an identity
 * registered with the embedded DC all the same) and 5 live tunnels: one phone, granted the first five, with a tunnel
 * to each. Idle: the lowest VmRSS while the agent idles for 15 s after that setup (V8 collects the setup's garbage
 * and returns its pages some 10 s after the last activity); load: the highest while iperf3 (TCP, then UDP) runs
 * through the lamp's tunnel.
 */
export function benchAgentMemory(opts: AgentBenchOptions = {}): Promise<AgentMemoryFigures> {
  const log = opts.log ?? (() => undefined);
  const paired = 50;
  const tunnels = 5;
  const settleMs = opts.quick ? 1500 : 15_000;
  const loadS = opts.quick ? 2 : 8;
  return withTestbed('household', { delays: false }, (tb: Testbed) =>
    withDaemons('ntm-bench-mem-', log, async ({ dir, started }) => {
      const h = await startHousehold(tb, dir, started, { paired, granted: tunnels, log });
      for (const d of h.devices.slice(0, tunnels)) await connectPhone(h, d);
      const st = (await h.agent.call({ cmd: 'tunnels' })) as unknown[];
      log(`agent_memory: ${paired} paired, ${st.length} tunnels up`);
      await startIperfServer(tb, 'lamp');
      const pid = h.agent.proc.pid!;
      const idle = sampleMemory(pid, 250);
      await new Promise((r) => setTimeout(r, settleMs));
      const idleLow = idle.stop().reduce((a, b) => (b.rss < a.rss ? b : a));
      const load = sampleMemory(pid, 100);
      const lamp = h.devices[0]!;
      const tcp = await iperf(tb, 'phone', lamp.virtualV4, { seconds: loadS, mss: TCP_MSS });
      const udp = await iperf(tb, 'phone', lamp.virtualV4, { seconds: loadS, udp: true, bitrate: UDP_TARGET, length: UDP_LENGTH });
      const loadHigh = load.stop().reduce((a, b) => (b.rss > a.rss ? b : a));
      const mem = processMemoryMb(pid);
      log(`agent_memory: idle ${idleLow.rss.toFixed(1)} MB, load ${loadHigh.rss.toFixed(1)} MB (tcp ${tcp.mbps.toFixed(0)}, udp ${udp.mbps.toFixed(0)} Mbit/s), peak ${mem.peak.toFixed(1)} MB`);
      const split = (m: { anon: number; file: number }) => ({ anon: round(m.anon, 1), file: round(m.file, 1) });
      return {
        rss_mb_idle: round(idleLow.rss, 1),
        rss_mb_load: round(loadHigh.rss, 1),
        rss_mb_peak: round(mem.peak, 1),
        idle_split_mb: split(idleLow),
        load_split_mb: split(loadHigh),
        paired,
        tunnels: st.length,
        load_mbps: { tcp: round(tcp.mbps, 0), udp: round(udp.mbps, 0) },
      };
    }),
  );
}

export function benchHandover(opts: AgentBenchOptions = {}): Promise<HandoverFigures> {
  return measureHandover({ moves: opts.quick ? 2 : 12, ...(opts.log ? { log: opts.log } : {}) });
}
