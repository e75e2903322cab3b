// The Node.js (V8) flags each role is started with: one list read by the systemd unit's check, the demo and the
// tests' launcher, so that what the benchmarks measure is the process as the product starts it.
//
// The agent: a young generation of 2 MiB semi-spaces instead of V8's 16 MiB. The data path allocates little per
// packet (STYLE.md habits 1–2), so scavenges stay cheap, and the agent's resident set drops by some 13 MB idle and
// under load (agent_memory benchmark, issue 6 item 4: 98.6 → 85.3 MB idle, 102.1 → 90.8 MB under iperf3 load).
// V8 sizes the heap when the process starts; setting the flag later (v8.setFlagsFromString) has no effect.
// A standalone DC runs without it for now (withdrawn on a suspicion that proved wrong, tests/bench/README.md "DC
// memory"); without it the DC still holds 100,000 terminals in ~447 MiB, with it ~440 MiB.
//
// The DC: garbage collection on its own thread (--single-threaded-gc). Its work is one event loop, run on a core of
// its own (tests/bench dc_capacity pins it so); V8's parallel and concurrent GC helper threads then share that core
// and cost more CPU than they save: side by side, a first-time registration cost the DC less CPU without them, and
// its event loop no more (tests/bench/README.md, issue 15, 2026-12-06 evening).
//
// Flags a daemon can set on itself are set at its start instead (setDaemonV8Flags), so that no launcher has to know
// them: the systemd unit, the RS autoscaler and a user typing `ntm up` all get them.
import { setFlagsFromString } from 'node:v8';

export type Role = 'agent' | 'dc' | 'rs' | 'up';

export const NODE_FLAGS: Readonly<Record<Role, readonly string[]>> = Object.freeze({
  agent: ['--max-semi-space-size=2'],
  dc: ['--single-threaded-gc'],
  rs: [],
  up: [],
});

/**
 * --always-sparkplug (issue 15): V8's baseline compiler for every function from its first call. The signalling
 * handlers (registration, Direction Requests, route planning, tickets, binds, the Noise handshake) run once every few
 * seconds or minutes, too seldom for V8 to move them off its bytecode interpreter by itself, and one registration or
 * tunnel set-up crosses several of them in each of up to five processes: baseline code runs them markedly faster
 * (tests/bench/README.md, "Issue 15, latency"). It governs code compiled from then on, so a daemon sets it first thing,
 * before its handlers ever run.
 */
export const DAEMON_V8_FLAGS: readonly string[] = Object.freeze(['--always-sparkplug']);

export function setDaemonV8Flags(): void {
  for (const f of DAEMON_V8_FLAGS) setFlagsFromString(f);
}

/** The flags of `role` this process was started without (on its command line or in NODE_OPTIONS). */
export function missingNodeFlags(role: Role, execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): string[] {
  const given = new Set([...execArgv, ...nodeOptions.split(/\s+/).filter(Boolean)]);
  return NODE_FLAGS[role].filter((f) => !given.has(f));
}
