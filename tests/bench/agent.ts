// The benchmarks of the agent appliance (issue 6 items 4–6): agent memory, handover and data-path throughput. Their
// measuring code comes with the agent (issue 4); until then each throws BenchmarkUnavailableError, which run.ts
// records as `null` with the reason, so the results file never carries a made-up figure.
import { BenchmarkUnavailableError } from './errors.js';

export interface AgentBenchOptions {
  /** Smoke mode: the smallest run that still produces every figure. */
  readonly quick?: boolean;
  readonly log?: (line: string) => void;
}

/** RSS (MB) of `ntm agent` with 50 paired appliances and 5 live tunnels: idle, and under iperf3 load. */
export interface AgentMemoryFigures {
  readonly rss_mb_idle: number;
  readonly rss_mb_load: number;
}

/** On `household`: the phone moves networks during a TCP transfer; median interruption of ≥ 10 moves. */
export interface HandoverFigures {
  readonly median_ms: number;
  /** The phone–agent RTT the goal (≤ 2 × RTT + 20 ms) is computed from. */
  readonly rtt_ms: number;
}

/** iperf3 phone → appliance through the agent, wireguard-go and no tunnel, side by side in one run. */
export interface ThroughputBenchFigures {
  readonly tcp_mbps: { readonly agent: number; readonly wireguard_go: number; readonly plain: number };
  readonly udp_mbps: { readonly agent: number; readonly wireguard_go: number; readonly plain: number };
  readonly tcp_ratio_vs_wireguard_go: number;
}

export function benchAgentMemory(_opts: AgentBenchOptions = {}): Promise<AgentMemoryFigures> {
  return Promise.reject(new BenchmarkUnavailableError('agent_memory', 'the agent memory benchmark comes with the agent (issue 4)'));
}

export function benchHandover(_opts: AgentBenchOptions = {}): Promise<HandoverFigures> {
  return Promise.reject(new BenchmarkUnavailableError('handover', 'the household handover benchmark comes with the agent (issue 4)'));
}

export function benchThroughput(_opts: AgentBenchOptions = {}): Promise<ThroughputBenchFigures> {
  return Promise.reject(new BenchmarkUnavailableError('throughput', 'the iperf3 / wireguard-go throughput benchmark is issue 4, item 6'));
}
