#!/usr/bin/env node
// `ntm`: the one command line of the NTMobile agent appliance. Each role runs alone (dc, rs, up) or all together in
// the household's agent (agent); status and connect talk to a running daemon. The only place that wires modules.
import { join } from 'node:path';
import { describeSchema, SCHEMA } from '../config/schema.js';
import { InputError, NtmError } from '../types/errors.js';
import { Exit, EXIT_HELP, exitCodeOf } from './exit.js';
import { parseArgs, one, has } from './args.js';
import { request } from './control-socket.js';
import { runDc, DC_HELP } from './run-dc.js';
import { runRs, RS_HELP } from './run-rs.js';
import { runUp, UP_HELP } from './run-up.js';
import { runAgent, AGENT_HELP } from './run-agent.js';
import { runEnroll, ENROLL_HELP } from './run-enroll.js';
import { runProvision, PROVISION_HELP } from './run-provision.js';
import { runKeys, KEYS_HELP } from './run-keys.js';
import { setDaemonV8Flags } from './node-flags.js';

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
  ntm keys     create|list|revoke        enrollment keys of an ISP-run DC (expiry, uses, tags)

Run \`ntm <command> --help\` for a role's options. Wire format: docs/protocol.md.
Commands that print state take --json (one JSON document on stdout).

${EXIT_HELP}`;

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
    process.stdout.write(`ntm status [--role terminal|dc|rs|agent] [--data-dir DIR | --socket PATH] [--json]\n\n${EXIT_HELP}`);
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

/** `ntm config --json`: section → key → {default, doc}, for tools that generate config files. */
function schemaJson(): Record<string, Record<string, { default: unknown; doc: string }>> {
  const out: Record<string, Record<string, { default: unknown; doc: string }>> = {};
  for (const [section, fields] of Object.entries(SCHEMA))
    out[section] = Object.fromEntries(Object.entries(fields as Record<string, { def: unknown; doc: string }>).map(([k, f]) => [k, { default: f.def, doc: f.doc }]));
  return out;
}

const CONNECT_HELP = `ntm connect [--data-dir DIR | --socket PATH] [--json] TARGET

Opens a tunnel from the running terminal (\`ntm up\`) to TARGET (an ID, a virtual address or NAME.ntm)
and prints {peer, path, setupMs, …} as JSON.

${EXIT_HELP}`;

async function connect(argv: readonly string[]): Promise<void> {
  if (argv.includes('--help')) return void process.stdout.write(CONNECT_HELP);
  const { path, rest } = socketOf(argv);
  if (rest.length !== 1) throw new InputError('usage: ntm connect [--data-dir DIR] TARGET');
  const r = await request(path, { cmd: 'connect', target: rest[0] }, 30_000);
  // Always JSON (the setup time, the path): --json is accepted for symmetry with the other commands.
  process.stdout.write(JSON.stringify(r) + '\n');
}

const DAEMONS: ReadonlySet<string | undefined> = new Set(['dc', 'rs', 'up', 'agent']);

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  if (DAEMONS.has(cmd)) setDaemonV8Flags();
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
    case 'keys':
      return runKeys(rest);
    case 'config':
      if (rest.includes('--help')) return void process.stdout.write(`ntm config [--json]: every configuration key, its default and meaning\n\n${EXIT_HELP}`);
      process.stdout.write((rest.includes('--json') ? JSON.stringify(schemaJson(), null, 2) : describeSchema()) + '\n');
      return;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(HELP);
      return;
    default:
      process.stderr.write(`ntm: unknown command "${cmd}"\n\n${HELP}`);
      process.exit(Exit.USAGE);
  }
}

main().catch((e: unknown) => {
  const err = e as Error;
  const code = exitCodeOf(e);
  // Expected failures (bad flags, config, unreachable daemon, refusals) get one clear line; a bug its stack.
  if (code !== Exit.SOFTWARE || err instanceof NtmError) process.stderr.write(`ntm: ${err.message}\n`);
  else process.stderr.write(`ntm: ${err.stack ?? String(err)}\n`);
  process.exit(code);
});

export { DC_HELP, RS_HELP, UP_HELP, AGENT_HELP, ENROLL_HELP, PROVISION_HELP, KEYS_HELP };
