#!/usr/bin/env node
// `ntm`: the one command line of the NTMobile agent appliance. Each role runs alone (dc, rs, up) or all together in
// the household's agent (agent); status and connect talk to a running daemon. The only place that wires modules.
import { join } from 'node:path';
import { describeSchema } from '../config/schema.js';
import { NtmError } from '../types/errors.js';
import { parseArgs, one, has } from './args.js';
import { request } from './control-socket.js';
import { runDc, DC_HELP } from './run-dc.js';
import { runRs, RS_HELP } from './run-rs.js';
import { runUp, UP_HELP } from './run-up.js';
import { runAgent, AGENT_HELP } from './run-agent.js';
import { runEnroll, ENROLL_HELP } from './run-enroll.js';
import { runProvision, PROVISION_HELP } from './run-provision.js';

const HELP = `ntm — NTMobile (Network Traversal with Mobility) for the vCPE

Roles, each runnable alone on its own host or all in one process (the agent):
  ntm dc       Direction Coordinator: registers terminals, directs tunnels (paper §2.2–2.3)
  ntm rs       Relay Server: dual-stack relay for tunnels a DC routes through it
  ntm up       terminal daemon for a phone or laptop: virtual addresses, tunnels, mobility
  ntm agent    the household agent on the vCPE: DC + RS + NTMobile on behalf of LAN appliances
Tools:
  ntm enroll   TOKEN-OR-LINK            join a household (the token its web page shows)
  ntm status   [--role terminal|dc|rs|agent] [--data-dir DIR | --socket PATH] [--json]
  ntm connect  [--data-dir DIR] TARGET      open a tunnel from a running terminal; prints the setup time
  ntm config   every configuration key, its default and meaning
  ntm provision --subscribers CSV --out DIR   bulk provisioning of household agents (ISP)

Run \`ntm <command> --help\` for a role's options. Wire format: docs/protocol.md.
`;

const DEFAULT_DIRS: Record<string, string> = {
  terminal: '/var/lib/ntm/terminal',
  dc: '/var/lib/ntm/dc',
  rs: '/var/lib/ntm/rs',
  agent: '/var/lib/ntm/agent',
};

function socketOf(argv: readonly string[]): { path: string; rest: string[]; json: boolean } {
  const p = parseArgs(argv, ['json', 'help']);
  const role = one(p, 'role') ?? 'terminal';
  const dir = one(p, 'data-dir') ?? DEFAULT_DIRS[role] ?? DEFAULT_DIRS.terminal!;
  const sock = role === 'terminal' ? 'terminal.sock' : `${role}.sock`;
  return { path: one(p, 'socket') ?? join(dir, sock), rest: p.positional, json: has(p, 'json') };
}

async function status(argv: readonly string[]): Promise<void> {
  if (argv.includes('--help')) {
    process.stdout.write('ntm status [--role terminal|dc|rs|agent] [--data-dir DIR | --socket PATH] [--json]\n');
    return;
  }
  const { path, json } = socketOf(argv);
  const st = (await request(path, { cmd: 'status' })) as Record<string, unknown>;
  if (json) {
    process.stdout.write(JSON.stringify(st, null, 2) + '\n');
    return;
  }
  const lines: string[] = [`${String(st.role)} ${String(st.id ?? '')}`];
  for (const n of (st.nodes as Array<Record<string, unknown>> | undefined) ?? [])
    lines.push(`  identity ${String(n.id)}  v4 ${String(n.v4)}  v6 ${String(n.v6)}  registered ${String(n.registered)}  behind NAT ${String(n.behindNat)}`);
  for (const t of (st.tunnels as Array<Record<string, unknown>> | undefined) ?? [])
    lines.push(`  tunnel → ${String(t.peerName || t.peer)}  ${String(t.state)}  ${String(t.path)}  rtt ${String(t.rttMs)} ms  tx ${String(t.txBytes)} B  rx ${String(t.rxBytes)} B`);
  if (st.role !== 'terminal') lines.push(JSON.stringify(st, null, 2));
  process.stdout.write(lines.join('\n') + '\n');
}

async function connect(argv: readonly string[]): Promise<void> {
  const { path, rest } = socketOf(argv);
  if (rest.length !== 1) throw new NtmError('usage: ntm connect [--data-dir DIR] TARGET');
  const r = await request(path, { cmd: 'connect', target: rest[0] }, 30_000);
  process.stdout.write(JSON.stringify(r) + '\n');
}

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  switch (cmd) {
    case 'dc':
      return runDc(rest);
    case 'rs':
      return runRs(rest);
    case 'up':
      return runUp(rest);
    case 'agent':
      return runAgent(rest);
    case 'enroll':
      return runEnroll(rest);
    case 'provision':
      return runProvision(rest);
    case 'status':
      return status(rest);
    case 'connect':
      return connect(rest);
    case 'config':
      process.stdout.write(describeSchema() + '\n');
      return;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(HELP);
      return;
    default:
      process.stderr.write(`ntm: unknown command "${cmd}"\n\n${HELP}`);
      process.exit(2);
  }
}

main().catch((e: unknown) => {
  const err = e as Error;
  // Expected failures (bad flags, config, unreachable daemon) get one clear line; anything else its stack.
  if (err instanceof NtmError) process.stderr.write(`ntm: ${err.message}\n`);
  else process.stderr.write(`ntm: ${err.stack ?? String(err)}\n`);
  process.exit(1);
});

export { DC_HELP, RS_HELP, UP_HELP, AGENT_HELP, ENROLL_HELP, PROVISION_HELP };
