// The testbed's command line (scripts/testbed): up, down, exec, status, move, topologies.
import { spawnSync } from 'node:child_process';
import { CommandError, TestbedError, TopologyError } from './errors.js';
import type { Impairment, UpOptions } from './plan.js';
import { statePrefixes } from './state.js';
import { DEFAULT_PREFIX, type DownReport, teardown, teardownAll, Testbed, type TestbedStatus } from './testbed.js';
import { listTopologies, loadTopology, NAT_KINDS, type NatKind } from './topology.js';

const USAGE = `usage: scripts/testbed COMMAND ...
  up TOPOLOGY [--column C] [--nat ROUTER=eim|symmetric|full-cone|port-restricted]... [--no-delay]
              [--impair SITE-SITE:rtt=MS,loss=P,jitter=MS,dup=P,reorder]... [--name PREFIX]
  down [--name PREFIX | --all]
  exec HOST [--name PREFIX] -- CMD [ARG...]
  status [--name PREFIX] [--json]
  move HOST NETWORK [--name PREFIX]          e.g. move phone lte / move phone wifi
  topologies                                 list the shipped topologies
Namespaces are PREFIX-HOST (default prefix "${DEFAULT_PREFIX}"). State lives in /run/ntm-testbed/PREFIX/.`;

class UsageError extends Error {
  override readonly name = 'UsageError';
}

interface Parsed {
  positional: string[];
  flags: Map<string, string[]>;
  rest: string[];
}

/** Flags that take no value; every other --flag takes the next argument. */
const SWITCHES = new Set(['--no-delay', '--all', '--json', '--help', '-h']);

function parse(argv: readonly string[], allowed: readonly string[]): Parsed {
  const p: Parsed = { positional: [], flags: new Map(), rest: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--') {
      p.rest = argv.slice(i + 1);
      break;
    }
    if (a.startsWith('-')) {
      const [flag = '', inline] = a.split(/=(.*)/s, 2);
      if (!allowed.includes(flag)) throw new UsageError(`unknown option ${flag}`);
      let value = '';
      if (!SWITCHES.has(flag)) {
        value = inline ?? argv[++i] ?? '';
        if (value === '') throw new UsageError(`${flag} needs a value`);
      }
      p.flags.set(flag, [...(p.flags.get(flag) ?? []), value]);
    } else {
      p.positional.push(a);
    }
  }
  return p;
}

function one(p: Parsed, flag: string): string | undefined {
  const v = p.flags.get(flag);
  return v?.[v.length - 1];
}

function parseImpair(spec: string): [string, Impairment] {
  const m = /^([a-z][a-z0-9]*-[a-z][a-z0-9]*):(.+)$/.exec(spec);
  if (!m?.[1] || !m[2]) throw new UsageError(`--impair wants SITE-SITE:key=value,..., not "${spec}"`);
  const imp: Impairment = {};
  for (const kv of m[2].split(',')) {
    const [k = '', v] = kv.split('=', 2);
    const num = (): number => {
      const n = Number(v);
      if (v === undefined || !Number.isFinite(n)) throw new UsageError(`--impair ${m[1]}: ${k} needs a number`);
      return n;
    };
    if (k === 'rtt') imp.rttMs = num();
    else if (k === 'loss') imp.loss = num();
    else if (k === 'jitter') imp.jitterMs = num();
    else if (k === 'dup') imp.duplicate = num();
    else if (k === 'reorder') imp.reorder = v === undefined || v === 'true' || v === '1';
    else throw new UsageError(`--impair ${m[1]}: unknown key "${k}" (rtt, loss, jitter, dup, reorder)`);
  }
  return [m[1], imp];
}

/** --name, else the default prefix if it is up, else the only testbed that is up. */
function pickPrefix(p: Parsed): string {
  const named = one(p, '--name');
  if (named) return named;
  const up = statePrefixes();
  if (up.includes(DEFAULT_PREFIX) || up.length === 0) return DEFAULT_PREFIX;
  if (up.length === 1 && up[0]) return up[0];
  throw new UsageError(`several testbeds are up (${up.join(', ')}); say which with --name`);
}

function printStatus(s: TestbedStatus): void {
  const nat = Object.entries(s.nat)
    .map(([r, k]) => `${r}=${k}`)
    .join(' ');
  console.log(`testbed "${s.prefix}": topology ${s.topology}, column ${s.column}, delays ${s.delays ? 'on' : 'off'}, NAT ${nat || 'none'}${s.phase === 'up' ? '' : ` (${s.phase})`}`);
  const rows = s.hosts.map((h) => [
    h.host,
    h.ns,
    h.role + (h.nat ? `(${h.nat})` : ''),
    h.uplink ? `on ${h.uplink}` : '',
    h.ifaces.map((i) => `${i.name}${i.state === 'DOWN' ? '(down)' : ''} ${i.addrs.join(' ') || '-'}`).join('; '),
  ]);
  const head = ['HOST', 'NAMESPACE', 'ROLE', 'UPLINK', 'INTERFACES'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  for (const r of [head, ...rows]) console.log('  ' + r.map((c, i) => (i < r.length - 1 ? c.padEnd(widths[i] ?? 0) : c)).join('  '));
  for (const e of s.emulators) {
    const pairs = e.stats?.pairs ?? [];
    const pkts = pairs.reduce((n, p) => n + p.packets, 0);
    const late = pairs.reduce((m, p) => Math.max(m, p.lateUs.max), 0);
    if (e.pid < 0) console.log(`  emulator ${e.router}: no process needed (duplication only, done by nft)`);
    else console.log(`  emulator ${e.router}: pid ${e.pid} ${e.alive ? 'running' : 'NOT RUNNING'}, ${pairs.length} queued directions, ${pkts} packets, worst lateness ${late} µs (log ${e.logFile})`);
  }
  if (s.delays && s.emulators.length === 0) console.log('  no emulated delays');
}

function printDown(r: DownReport): void {
  console.log(`down "${r.prefix}": ${r.namespaces.length} namespaces deleted, ${r.killed.length} processes ended`);
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...args] = argv;
  switch (cmd) {
    case 'up': {
      const p = parse(args, ['--column', '--nat', '--no-delay', '--name', '--impair']);
      const [topology, extra] = p.positional;
      if (!topology || extra) throw new UsageError('up takes one TOPOLOGY (see "scripts/testbed topologies")');
      const nat: Record<string, NatKind> = {};
      for (const spec of p.flags.get('--nat') ?? []) {
        const [router, kind] = spec.split('=', 2);
        if (!router || !kind || !(NAT_KINDS as readonly string[]).includes(kind)) throw new UsageError(`--nat wants ROUTER=${NAT_KINDS.join('|')}, not "${spec}"`);
        nat[router] = kind as NatKind;
      }
      const opts: UpOptions = {
        column: one(p, '--column'),
        nat,
        delays: !p.flags.has('--no-delay'),
        prefix: one(p, '--name') ?? DEFAULT_PREFIX,
        impair: Object.fromEntries((p.flags.get('--impair') ?? []).map(parseImpair)),
      };
      const tb = await Testbed.up(topology, opts);
      printStatus(await tb.status());
      console.log(`run things with: scripts/testbed exec HOST${tb.prefix === DEFAULT_PREFIX ? '' : ` --name ${tb.prefix}`} -- CMD`);
      return 0;
    }
    case 'down': {
      const p = parse(args, ['--name', '--all']);
      if (p.positional.length > 0) throw new UsageError('down takes no positional arguments');
      const reports = p.flags.has('--all') ? teardownAll() : [teardown(one(p, '--name') ?? DEFAULT_PREFIX)];
      reports.forEach(printDown);
      if (reports.length === 0) console.log('nothing is up');
      return 0;
    }
    case 'exec': {
      const p = parse(args, ['--name']);
      const [host] = p.positional;
      if (!host || p.positional.length > 1 || p.rest.length === 0) throw new UsageError('exec HOST [--name PREFIX] -- CMD [ARG...]');
      const tb = Testbed.attach(pickPrefix(p));
      const r = spawnSync('ip', ['netns', 'exec', tb.ns(host), ...p.rest], { stdio: 'inherit' });
      return r.status ?? 128 + 9;
    }
    case 'status': {
      const p = parse(args, ['--name', '--json']);
      const prefixes = p.flags.has('--name') ? [one(p, '--name') ?? ''] : statePrefixes();
      const all = await Promise.all(prefixes.map((x) => Testbed.attach(x).status()));
      if (p.flags.has('--json')) console.log(JSON.stringify(all, null, 2));
      else if (all.length === 0) console.log('no testbed is up');
      else all.forEach(printStatus);
      return 0;
    }
    case 'move': {
      const p = parse(args, ['--name']);
      const [host, network, extra] = p.positional;
      if (!host || !network || extra) throw new UsageError('move HOST NETWORK [--name PREFIX]');
      const tb = Testbed.attach(pickPrefix(p));
      const before = tb.uplink(host);
      await tb.move(host, network);
      console.log(`${host}: ${before ?? '?'} -> ${network}`);
      return 0;
    }
    case 'topologies': {
      for (const name of listTopologies()) console.log(`${name.padEnd(10)} ${loadTopology(name).description}`);
      return 0;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command "${cmd}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof UsageError) console.error(`testbed: ${e.message}\n\n${USAGE}`);
    else if (e instanceof TopologyError || e instanceof TestbedError || e instanceof CommandError) console.error(`testbed: ${e.message}`);
    else console.error(e);
    process.exit(e instanceof UsageError ? 2 : 1);
  },
);
