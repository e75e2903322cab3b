// The benchmarks of the agent appliance (issue 6 items 4–6, issue 4 item 6), each on the `household` testbed with
// real processes: `ntm agent` on the vCPE, the lamp (and other appliances) paired, a phone enrolled and running
// `ntm up` behind its Wi-Fi NAT (household.ts).
// - throughput: iperf3 phone → lamp through the agent, through wireguard-go and with no tunnel, interleaved;
// - agent_memory: the agent's VmRSS with 50 paired appliances and 5 live tunnels, idle and under iperf3 load;
// - handover: the phone moves networks during a TCP transfer from the lamp; the interruption of each move.
import type { Testbed } from '../../scripts/netns/index.js';
import { withTestbed } from '../lib/testbed.js';
import { withDaemons } from '../lib/ntm.js';
import { connectPhone, iperf, type IperfResult, IPERF_PORT, processCpuSeconds, processMemoryMb, sampleMemory, startHousehold, startIperfServer } from './household.js';
import { startPortForward, startWireguard } from './wireguard.js';
import { quantile, round } from './results.js';
import { measureHandover } from './handover.js';

export interface AgentBenchOptions {
  /** Smoke mode: the smallest run that still produces every figure. */
  readonly quick?: boolean;
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
  readonly wireguard_go: number;
  readonly plain: number;
}

/** iperf3 phone → appliance through the agent, wireguard-go and no tunnel, side by side in one run. */
export interface ThroughputBenchFigures {
  readonly tcp_mbps: PathFigures;
  /** UDP: the received rate at a target rate above every path's ceiling. */
  readonly udp_mbps: PathFigures;
  readonly tcp_ratio_vs_wireguard_go: number;
  readonly udp_ratio_vs_wireguard_go?: number;
  /** The tunnels against no tunnel at all (TCP). */
  readonly tcp_ratio_vs_plain?: { readonly agent: number; readonly wireguard_go: number };
  /** UDP datagrams lost at that target rate (median %). */
  readonly udp_loss_pct?: PathFigures;
  /**
   * CPU the two tunnel ends used during the TCP runs (median, % of one core, summed): `ntm agent` + the phone's
   * `ntm up`, or the two wireguard-go processes. Includes the kernel work charged to them (see README).
   */
  readonly tcp_cpu_pct?: { readonly agent: number; readonly wireguard_go: number };
  /** Every run's figure, in run order (Mbit/s). */
  readonly runs_mbps?: { readonly tcp: PathFigureLists; readonly udp: PathFigureLists };
  /** Rounds of (agent, wireguard-go, plain) and seconds per iperf3 run. */
  readonly rounds?: number;
  readonly seconds?: number;
  /** Inner MTU of each path (bytes): the agent's tunnel 1380, wireguard-go set to the same, the plain path 1500. */
  readonly mtu?: PathFigures;
}

export interface PathFigureLists {
  readonly agent: readonly number[];
  readonly wireguard_go: readonly number[];
  readonly plain: readonly number[];
}

const PATHS = ['agent', 'wireguard_go', 'plain'] as const;
type PathName = (typeof PATHS)[number];

/** Our tunnel's inner MTU (config `agent.mtu` / `terminal.mtu` default). wireguard-go gets the same for the benchmark. */
const INNER_MTU = 1380;
/** TCP MSS and UDP payload that fit INNER_MTU in IPv4 (20 + 20 / 20 + 8 bytes of headers), used on all three paths. */
const TCP_MSS = INNER_MTU - 40;
const UDP_LENGTH = INNER_MTU - 28;
/** UDP target rate: above what any path here carries, so the received rate is the ceiling. */
const UDP_TARGET = '2G';

const median = (xs: readonly number[]): number => quantile(xs, 0.5);
const mapPaths = (m: Record<PathName, number[]>, f: (x: number) => number): PathFigureLists => ({
  agent: m.agent.map(f),
  wireguard_go: m.wireguard_go.map(f),
  plain: m.plain.map(f),
});

/** Brings `household` up (without delays: the CPU is what is measured) and runs the three paths interleaved. */
export function benchThroughput(opts: AgentBenchOptions = {}): Promise<ThroughputBenchFigures> {
  const log = opts.log ?? (() => undefined);
  const rounds = opts.quick ? 1 : 4;
  const seconds = opts.quick ? 1 : 5;
  return withTestbed('household', { delays: false }, (tb) =>
    withDaemons('ntm-bench-tput-', log, async ({ dir, started, defer }) => {
      const h = await startHousehold(tb, dir, started, { log });
      const lamp = h.devices[0]!;
      await startIperfServer(tb, 'lamp');
      const { path } = await connectPhone(h, lamp);
      const wg = await startWireguard(tb, dir, INNER_MTU);
      defer(() => wg.stop());
      const fwd = await startPortForward(tb, IPERF_PORT);
      const target: Record<PathName, string> = { agent: lamp.virtualV4, wireguard_go: wg.lampAddress, plain: fwd.lampAddress };
      log(`throughput: agent tunnel ${path} to ${target.agent}; wireguard-go to ${target.wireguard_go}; plain to ${target.plain} (DNAT)`);
      const run = (p: PathName, udp: boolean, s: number): Promise<IperfResult> =>
        iperf(tb, 'phone', target[p], udp ? { seconds: s, udp, bitrate: UDP_TARGET, length: UDP_LENGTH } : { seconds: s, mss: TCP_MSS });
      const ends: Record<'agent' | 'wireguard_go', readonly number[]> = { agent: [h.agent.proc.pid!, h.phone.proc.pid!], wireguard_go: wg.pids };
      const cpuOf = (pids: readonly number[]) => pids.reduce((a, pid) => a + processCpuSeconds(pid), 0);
      // Warm-up (not counted): the JIT of both Node ends, ARP, conntrack, wireguard-go's handshake.
      for (const p of PATHS) await run(p, false, 1);
      const tcp: Record<PathName, number[]> = { agent: [], wireguard_go: [], plain: [] };
      const udp: Record<PathName, number[]> = { agent: [], wireguard_go: [], plain: [] };
      const loss: Record<PathName, number[]> = { agent: [], wireguard_go: [], plain: [] };
      const cpu: Record<'agent' | 'wireguard_go', number[]> = { agent: [], wireguard_go: [] };
      for (let r = 0; r < rounds; r++) {
        for (const p of PATHS) {
          const c0 = p === 'plain' ? 0 : cpuOf(ends[p]);
          const t0 = performance.now();
          const x = await run(p, false, seconds);
          const pct = p === 'plain' ? NaN : (100 * (cpuOf(ends[p]) - c0)) / ((performance.now() - t0) / 1000);
          if (p !== 'plain') cpu[p].push(pct);
          tcp[p].push(x.mbps);
          log(`  round ${r + 1} tcp ${p}: ${x.mbps.toFixed(0)} Mbit/s (${x.retransmits} retransmits)${p === 'plain' ? '' : `, tunnel ends ${pct.toFixed(0)}% CPU`}`);
        }
        for (const p of PATHS) {
          const x = await run(p, true, seconds);
          udp[p].push(x.mbps);
          loss[p].push(x.lossPct ?? NaN);
          log(`  round ${r + 1} udp ${p}: ${x.mbps.toFixed(0)} Mbit/s received of ${x.sentMbps?.toFixed(0)} sent, ${x.lossPct?.toFixed(1)}% lost`);
        }
      }
      const med = (m: Record<PathName, number[]>, digits = 1): PathFigures => ({
        agent: round(median(m.agent), digits),
        wireguard_go: round(median(m.wireguard_go), digits),
        plain: round(median(m.plain), digits),
      });
      const t = med(tcp);
      const u = med(udp);
      return {
        tcp_mbps: t,
        udp_mbps: u,
        tcp_ratio_vs_wireguard_go: round(median(tcp.agent) / median(tcp.wireguard_go), 3),
        udp_ratio_vs_wireguard_go: round(median(udp.agent) / median(udp.wireguard_go), 3),
        tcp_ratio_vs_plain: { agent: round(median(tcp.agent) / median(tcp.plain), 3), wireguard_go: round(median(tcp.wireguard_go) / median(tcp.plain), 3) },
        udp_loss_pct: med(loss),
        tcp_cpu_pct: { agent: round(median(cpu.agent), 0), wireguard_go: round(median(cpu.wireguard_go), 0) },
        runs_mbps: { tcp: mapPaths(tcp, (x) => round(x, 0)), udp: mapPaths(udp, (x) => round(x, 0)) },
        rounds,
        seconds,
        mtu: { agent: INNER_MTU, wireguard_go: INNER_MTU, plain: 1500 },
      };
    }),
  );
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
