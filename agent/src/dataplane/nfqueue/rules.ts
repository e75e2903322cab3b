// The agent's firewall rules (iptables-nft / ip6tables-nft, netfilter's x_tables syntax on nf_tables) that steer
// overlay packets into NFQUEUE, and nothing else. All rules live in chains of our own, jumped to from the built-in
// hooks, so installing, updating and removing them never touches a rule we did not write.
//
//   raw PREROUTING    -> NTM-IN      UDP to the agent's port on a local address          -> NFQUEUE queueIn
//                                    (optional: the agent and terminal receive tunnel datagrams on their socket and
//                                    hand decrypted packets back through the loopback carrier below)
//   mangle OUTPUT     -> NTM-OUT     (terminal) this host's packets to virtual ranges     -> NFQUEUE queueOut
//   mangle FORWARD    -> NTM-FWD     (agent) TCPMSS on SYNs to/from virtual ranges, then
//                                    to virtual ranges -> NTM-PAIRED: from a paired source -> NFQUEUE queueOut
//   (with queueTcp: TCP of NTM-OUT and NTM-PAIRED goes to queueTcp instead, a queue that hands packets over unsegmented,
//   up to 64 KB, for the data plane to cut as TSO would: UDP cannot share it, since NFQUEUE does not say where the
//   datagrams of a UDP GSO packet end)
//   mangle OUTPUT     -> NTM-REINJ   loopback "carrier" datagrams of our own (dataplane/reinject.ts)  -> queueIn
//
// Why no --queue-bypass on these rules: they match overlay traffic only, and for it "no agent" must mean "no
// packets". With bypass, a dead agent would let a paired appliance's plaintext to a virtual address leave by the
// default route unencrypted, and tunnel datagrams reach a closed port (answered with ICMP). Without it the kernel
// drops them (and likewise once 1,024 packets await a verdict: the queue is not fail-open). Everything else never
// matches a queue rule, so it keeps flowing whether the agent runs or not.
//
// Why raw PREROUTING for arriving tunnel packets: it runs before conntrack and routing, so the packet the data
// plane puts back with an ACCEPT verdict (the decrypted inner packet) is tracked and routed as itself. Fragmented
// tunnel datagrams are reassembled before raw only where conntrack's defragmentation is active (it is on a NAT
// gateway); elsewhere later fragments carry no port and miss the rule, so tunnel packets must fit the path MTU.
// Why the paired set has a chain of its own: pairing an appliance rewrites NTM-PAIRED alone, atomically
// (one iptables-nft-restore transaction), without a gap in the other rules.
import { spawn } from 'node:child_process';
import { isIP } from 'node:net';
import { FirewallCommandError, RuleSpecError } from './errors.js';

export interface OverlayRuleSpec {
  /** Chain names are `<prefix>-IN`, `-OUT`, `-FWD`, `-PAIRED`. Default "NTM". Letters, digits, '_' (≤ 20). */
  readonly chainPrefix?: string;
  /** Queue of arriving tunnel packets (raw PREROUTING). */
  readonly queueIn: number;
  /** Queue of leaving overlay packets (mangle OUTPUT and FORWARD). */
  readonly queueOut: number;
  /** Queue of leaving overlay TCP, unsegmented (GSO); absent: TCP goes to queueOut with the rest. */
  readonly queueTcp?: number;
  /** The agent's UDP port (tunnel endpoint), for both families; 0 or absent: no NTM-IN chain. */
  readonly udpPort?: number;
  /** Virtual address ranges, IPv4 and/or IPv6 CIDRs (e.g. 198.18.0.0/15, fdxx:xxxx:xxxx::/48). */
  readonly virtualRanges: readonly string[];
  /** Terminal mode: queue this host's own packets to virtual ranges (mangle OUTPUT; loopback excluded). */
  readonly captureLocal?: boolean;
  /** Agent mode: keep the forward chains (even with no paired source yet). */
  readonly forward?: boolean;
  /** Agent mode: LAN addresses or prefixes whose forwarded packets to virtual ranges are queued. */
  readonly pairedSources?: readonly string[];
  /**
   * Largest inner packet the tunnel carries. When set, forwarded TCP SYNs to or from virtual ranges get their MSS
   * lowered to innerMtu − 40 (IPv4) / innerMtu − 60 (IPv6) by the kernel's TCPMSS (never raised).
   */
  readonly innerMtu?: number;
  /**
   * Loopback UDP ports of the cross-family carrier (dataplane/reinject.ts), per family: datagrams from and to that
   * port on `lo` are queued to queueIn in mangle OUTPUT, where a replaced packet is re-routed.
   */
  readonly carrierPorts?: { readonly 4?: number; readonly 6?: number };
}

export interface CommandResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs one command (no shell), feeding `input` to its stdin. Injectable: tests run it inside a namespace. */
export type CommandRunner = (command: string, args: readonly string[], input?: string) => Promise<CommandResult>;

export interface FirewallTools {
  readonly save4: string;
  readonly restore4: string;
  readonly save6: string;
  readonly restore6: string;
  /** Only used to delete a table this manager created and left empty. */
  readonly nft: string;
}

export const DEFAULT_TOOLS: FirewallTools = {
  save4: 'iptables-nft-save',
  restore4: 'iptables-nft-restore',
  save6: 'ip6tables-nft-save',
  restore6: 'ip6tables-nft-restore',
  nft: 'nft',
};

export const runCommand: CommandRunner = (command, args, input) =>
  new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (e) => resolve({ code: null, stdout, stderr: stderr + e.message }));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
  });

export interface FirewallOptions {
  readonly run?: CommandRunner;
  readonly tools?: Partial<FirewallTools>;
}

type Family = 4 | 6;
const FAMILIES: readonly Family[] = [4, 6];
const SUFFIXES = ['IN', 'OUT', 'FWD', 'PAIRED', 'REINJ'] as const;

/** One table's worth of our rules: chains in order with their rules, and the built-in hooks jumping to them. */
export interface TablePlan {
  readonly chains: Map<string, string[]>;
  readonly jumps: { readonly from: string; readonly to: string }[];
}
export type FamilyPlan = Map<string, TablePlan>;

interface Checked {
  readonly prefix: string;
  readonly queueIn: number;
  readonly queueOut: number;
  readonly queueTcp: number;
  readonly udpPort: number;
  readonly ranges: Record<Family, string[]>;
  readonly paired: Record<Family, string[]>;
  readonly captureLocal: boolean;
  readonly forward: boolean;
  readonly innerMtu: number;
  readonly carrier: Record<Family, number>;
}

function checkPrefix(prefix: string): string {
  if (!/^[A-Za-z][A-Za-z0-9_]{0,19}$/.test(prefix)) throw new RuleSpecError('chainPrefix', `"${prefix}" must be a letter then up to 19 letters, digits or _`);
  return prefix;
}

function checkInt(field: string, v: number, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) throw new RuleSpecError(field, `${v} is not an integer in [${min}, ${max}]`);
  return v;
}

/** Validates an address or prefix (iptables takes both) and returns its family. */
function familyOfPrefix(field: string, text: string): Family {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const fam = isIP(addr);
  if (fam !== 4 && fam !== 6) throw new RuleSpecError(field, `"${text}" is not an IP address or prefix`);
  if (slash >= 0) {
    const len = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(len) || Number(len) > (fam === 4 ? 32 : 128)) throw new RuleSpecError(field, `"${text}" has a bad prefix length`);
  }
  return fam;
}

function check(spec: OverlayRuleSpec): Checked {
  const ranges: Record<Family, string[]> = { 4: [], 6: [] };
  for (const r of spec.virtualRanges) ranges[familyOfPrefix('virtualRanges', r)].push(r);
  const paired: Record<Family, string[]> = { 4: [], 6: [] };
  for (const s of spec.pairedSources ?? []) paired[familyOfPrefix('pairedSources', s)].push(s);
  return {
    prefix: checkPrefix(spec.chainPrefix ?? 'NTM'),
    queueIn: checkInt('queueIn', spec.queueIn, 0, 65535),
    queueOut: checkInt('queueOut', spec.queueOut, 0, 65535),
    queueTcp: spec.queueTcp === undefined ? -1 : checkInt('queueTcp', spec.queueTcp, 0, 65535),
    udpPort: spec.udpPort ? checkInt('udpPort', spec.udpPort, 1, 65535) : 0,
    ranges,
    paired,
    captureLocal: spec.captureLocal ?? false,
    forward: spec.forward ?? (spec.pairedSources !== undefined && spec.pairedSources.length > 0),
    innerMtu: spec.innerMtu === undefined || spec.innerMtu === 0 ? 0 : checkInt('innerMtu', spec.innerMtu, 576, 65535),
    carrier: {
      4: spec.carrierPorts?.[4] ? checkInt('carrierPorts', spec.carrierPorts[4], 1, 65535) : 0,
      6: spec.carrierPorts?.[6] ? checkInt('carrierPorts', spec.carrierPorts[6], 1, 65535) : 0,
    },
  };
}

/** `match` to queueOut, preceded (with queueTcp) by the same match's TCP to queueTcp. */
function toQueues(c: Checked, match: string): string[] {
  const all = `${match} -j NFQUEUE --queue-num ${c.queueOut}`;
  return c.queueTcp < 0 ? [all] : [`${match} -p tcp -j NFQUEUE --queue-num ${c.queueTcp}`, all];
}

function pairedRules(c: Checked, f: Family): string[] {
  return c.paired[f].flatMap((s) => toQueues(c, `-s ${s}`));
}

/** The rules one family should have, as iptables-save lines without the "-A CHAIN" head. */
function plan(c: Checked, f: Family): FamilyPlan {
  const p = c.prefix;
  const out: FamilyPlan = new Map();
  if (c.udpPort > 0) {
    out.set('raw', {
      chains: new Map([[`${p}-IN`, [`-p udp -m addrtype --dst-type LOCAL -m udp --dport ${c.udpPort} -j NFQUEUE --queue-num ${c.queueIn}`]]]),
      jumps: [{ from: 'PREROUTING', to: `${p}-IN` }],
    });
  }
  const ranges = c.ranges[f];
  const mangle: TablePlan = { chains: new Map(), jumps: [] };
  if (c.carrier[f] > 0) {
    const port = c.carrier[f];
    mangle.chains.set(`${p}-REINJ`, [`-o lo -p udp -m udp --sport ${port} --dport ${port} -j NFQUEUE --queue-num ${c.queueIn}`]);
    mangle.jumps.push({ from: 'OUTPUT', to: `${p}-REINJ` });
  }
  if (ranges.length === 0) {
    if (mangle.chains.size > 0) out.set('mangle', mangle);
    return out;
  }
  if (c.captureLocal) {
    mangle.chains.set(
      `${p}-OUT`,
      ranges.flatMap((r) => toQueues(c, `! -o lo -d ${r}`)),
    );
    mangle.jumps.push({ from: 'OUTPUT', to: `${p}-OUT` });
  }
  if (c.forward) {
    const fwd: string[] = [];
    if (c.innerMtu > 0) {
      const mss = c.innerMtu - (f === 4 ? 40 : 60);
      for (const r of ranges) {
        fwd.push(`-d ${r} -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss ${mss}`);
        fwd.push(`-s ${r} -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss ${mss}`);
      }
    }
    for (const r of ranges) fwd.push(`-d ${r} -j ${p}-PAIRED`);
    mangle.chains.set(`${p}-FWD`, fwd);
    mangle.chains.set(`${p}-PAIRED`, pairedRules(c, f));
    mangle.jumps.push({ from: 'FORWARD', to: `${p}-FWD` });
  }
  if (mangle.chains.size > 0) out.set('mangle', mangle);
  return out;
}

/** What iptables-save shows of one table. */
export interface SavedTable {
  /** chain name → policy ("-" for user chains). */
  readonly chains: Map<string, string>;
  /** "-A CHAIN …" lines, verbatim. */
  readonly rules: string[];
}

export function parseSave(text: string): Map<string, SavedTable> {
  const tables = new Map<string, SavedTable>();
  let cur: SavedTable | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) {
      cur = { chains: new Map(), rules: [] };
      tables.set(line.slice(1).trim(), cur);
    } else if (!cur) continue;
    else if (line.startsWith(':')) {
      const [name = '', policy = ''] = line.slice(1).split(' ');
      cur.chains.set(name, policy);
    } else if (line.startsWith('-A ')) cur.rules.push(line);
  }
  return tables;
}

/** The chain a saved rule jumps or goes to, if any. */
function jumpTarget(rule: string): string | undefined {
  const t = rule.split(' ');
  for (let i = 0; i < t.length - 1; i++) if (t[i] === '-j' || t[i] === '-g') return t[i + 1];
  return undefined;
}

function ruleChain(rule: string): string {
  return rule.split(' ')[1] ?? '';
}

function isBuiltin(policy: string | undefined): boolean {
  return policy !== undefined && policy !== '-';
}

/**
 * The iptables-restore --noflush input that turns `saved` into `want` for our chains (names `ours`), touching
 * nothing else: declares (creates or flushes) and fills wanted chains, adds missing jumps, deletes stale jumps and
 * unwanted chains of ours. Returns '' when nothing is to be done.
 */
export function restoreScript(saved: Map<string, SavedTable>, want: FamilyPlan, ours: ReadonlySet<string>): string {
  const out: string[] = [];
  const tables = new Set<string>([...want.keys()]);
  for (const [name, t] of saved) for (const c of t.chains.keys()) if (ours.has(c)) tables.add(name);
  for (const table of [...tables].sort()) {
    const s = saved.get(table);
    const w = want.get(table);
    const lines: string[] = [];
    const wanted = w?.chains ?? new Map<string, string[]>();
    for (const chain of wanted.keys()) lines.push(`:${chain} - [0:0]`);
    // Jumps from built-in chains into ours: keep one per wanted (from, to), delete the rest.
    const kept = new Set<string>();
    for (const rule of s?.rules ?? []) {
      const to = jumpTarget(rule);
      const from = ruleChain(rule);
      if (to === undefined || !ours.has(to) || !isBuiltin(s?.chains.get(from))) continue;
      const key = `${from} ${to}`;
      const isWanted = (w?.jumps ?? []).some((j) => j.from === from && j.to === to) && rule === `-A ${from} -j ${to}`;
      if (isWanted && !kept.has(key)) kept.add(key);
      else lines.push(`-D${rule.slice(2)}`);
    }
    const stale = [...(s?.chains.keys() ?? [])].filter((c) => ours.has(c) && !wanted.has(c));
    for (const c of stale) lines.push(`-F ${c}`);
    for (const c of stale) lines.push(`-X ${c}`);
    for (const [chain, rules] of wanted) for (const r of rules) lines.push(`-A ${chain} ${r}`);
    for (const j of w?.jumps ?? []) if (!kept.has(`${j.from} ${j.to}`)) lines.push(`-I ${j.from} 1 -j ${j.to}`);
    if (lines.length > 0) out.push(`*${table}`, ...lines, 'COMMIT');
  }
  return out.length > 0 ? out.join('\n') + '\n' : '';
}

function ourChains(prefix: string): Set<string> {
  return new Set(SUFFIXES.map((s) => `${prefix}-${s}`));
}

/** True when a saved table holds nothing: no rules, built-in chains only, all with policy ACCEPT. */
function isEmptyTable(t: SavedTable): boolean {
  if (t.rules.length > 0) return false;
  for (const policy of t.chains.values()) if (policy !== 'ACCEPT') return false;
  return true;
}

/**
 * Installs, updates and removes the overlay's NFQUEUE rules. Operations are serialised; each one reads the
 * current rules, so re-running is idempotent and a manager started after a crash finds what is there.
 */
export class OverlayFirewall {
  private spec: Checked;
  private readonly run: CommandRunner;
  private readonly tools: FirewallTools;
  private queue: Promise<unknown> = Promise.resolve();
  /** Tables ("4:raw") that did not exist before our first install: removed again if we leave them empty. */
  private readonly created = new Set<string>();
  private recorded = false;

  constructor(spec: OverlayRuleSpec, options: FirewallOptions = {}) {
    this.spec = check(spec);
    this.run = options.run ?? runCommand;
    this.tools = { ...DEFAULT_TOOLS, ...options.tools };
  }

  /** The restore-format rules this spec gives one family (for logs and tests). */
  describe(family: Family): string {
    const lines: string[] = [];
    for (const [table, t] of plan(this.spec, family)) {
      lines.push(`*${table}`);
      for (const [chain, rules] of t.chains) {
        lines.push(`:${chain} - [0:0]`);
        for (const r of rules) lines.push(`-A ${chain} ${r}`);
      }
      for (const j of t.jumps) lines.push(`-I ${j.from} 1 -j ${j.to}`);
      lines.push('COMMIT');
    }
    return lines.join('\n') + '\n';
  }

  /** Brings the rules to the spec. Idempotent: a second call changes nothing. */
  install(): Promise<void> {
    return this.serial(async () => {
      for (const f of FAMILIES) {
        const saved = await this.save(f);
        if (!this.recorded) for (const t of ['raw', 'mangle']) if (!saved.has(t)) this.created.add(`${f}:${t}`);
        await this.restore(f, restoreScript(saved, plan(this.spec, f), ourChains(this.spec.prefix)));
        // An update may have emptied a table only we were using.
        await deleteEmptyTables(f, this.createdTables(f), this.run, this.tools);
      }
      this.recorded = true;
    });
  }

  /** Replaces the spec and reconciles (chains no longer wanted are removed). */
  update(spec: OverlayRuleSpec): Promise<void> {
    let next: Checked;
    try {
      next = check(spec);
      if (next.prefix !== this.spec.prefix) throw new RuleSpecError('chainPrefix', 'cannot change on a live manager; remove() first');
    } catch (e) {
      return Promise.reject(e as Error);
    }
    this.spec = next;
    return this.install();
  }

  /** Replaces the paired LAN sources: rewrites the PAIRED chains alone, one transaction per family. */
  setPairedSources(sources: readonly string[]): Promise<void> {
    let next: Checked;
    try {
      next = check({ ...this.specInput(), pairedSources: sources });
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return this.serial(async () => {
      this.spec = next;
      for (const f of FAMILIES) {
        const chain = `${next.prefix}-PAIRED`;
        if (!plan(next, f).get('mangle')?.chains.has(chain)) continue;
        const saved = await this.save(f);
        if (!saved.get('mangle')?.chains.has(chain)) {
          await this.restore(f, restoreScript(saved, plan(next, f), ourChains(next.prefix)));
          continue;
        }
        const lines = [`*mangle`, `:${chain} - [0:0]`, ...pairedRules(next, f).map((r) => `-A ${chain} ${r}`), 'COMMIT'];
        await this.restore(f, lines.join('\n') + '\n');
      }
    });
  }

  /**
   * Removes every rule and chain this manager's prefix names, and the tables its first install created (if left
   * empty), so iptables-save prints exactly what it printed before.
   */
  remove(): Promise<void> {
    return this.serial(() => removeAll(this.spec.prefix, this.run, this.tools, (f) => this.createdTables(f)));
  }

  /**
   * After a crash: finds our chains by name (prefix) and removes them with the jumps to them. A raw/mangle table
   * that held our chains and is left with nothing at all is deleted too (semantically a no-op; it restores what
   * iptables-save printed before a first install on a clean host).
   */
  static cleanup(chainPrefix = 'NTM', options: FirewallOptions = {}): Promise<void> {
    return removeAll(checkPrefix(chainPrefix), options.run ?? runCommand, { ...DEFAULT_TOOLS, ...options.tools }, (_f, touched) => touched);
  }

  private createdTables(f: Family): string[] {
    return [...this.created].filter((k) => k.startsWith(`${f}:`)).map((k) => k.slice(2));
  }

  private specInput(): OverlayRuleSpec {
    const c = this.spec;
    return {
      chainPrefix: c.prefix,
      queueIn: c.queueIn,
      queueOut: c.queueOut,
      ...(c.queueTcp >= 0 ? { queueTcp: c.queueTcp } : {}),
      udpPort: c.udpPort,
      virtualRanges: [...c.ranges[4], ...c.ranges[6]],
      captureLocal: c.captureLocal,
      forward: c.forward,
      pairedSources: [...c.paired[4], ...c.paired[6]],
      innerMtu: c.innerMtu,
      carrierPorts: { 4: c.carrier[4], 6: c.carrier[6] },
    };
  }

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const next = this.queue.then(op, op);
    this.queue = next.catch(() => {});
    return next;
  }

  private save(f: Family): Promise<Map<string, SavedTable>> {
    return saveTables(f, this.run, this.tools);
  }

  private restore(f: Family, script: string): Promise<void> {
    return restoreTables(f, script, this.run, this.tools);
  }
}

async function saveTables(f: Family, run: CommandRunner, tools: FirewallTools): Promise<Map<string, SavedTable>> {
  const cmd = f === 4 ? tools.save4 : tools.save6;
  const r = await run(cmd, []);
  if (r.code !== 0) throw new FirewallCommandError(cmd, r.code, r.stderr);
  return parseSave(r.stdout);
}

async function restoreTables(f: Family, script: string, run: CommandRunner, tools: FirewallTools): Promise<void> {
  if (script === '') return;
  const cmd = f === 4 ? tools.restore4 : tools.restore6;
  const r = await run(cmd, ['-w', '--noflush'], script);
  if (r.code !== 0) throw new FirewallCommandError(`${cmd} -w --noflush`, r.code, `${r.stderr}\ninput:\n${script}`);
}

/**
 * Removes our chains (by name) and the jumps to them, then deletes the tables `candidates` names (given the tables
 * that held our chains) if they are left with nothing at all.
 */
async function removeAll(
  prefix: string,
  run: CommandRunner,
  tools: FirewallTools,
  candidates: (f: Family, touched: string[]) => string[],
): Promise<void> {
  const ours = ourChains(prefix);
  for (const f of FAMILIES) {
    const saved = await saveTables(f, run, tools);
    const touched = [...saved].filter(([, t]) => [...t.chains.keys()].some((c) => ours.has(c))).map(([name]) => name);
    await restoreTables(f, restoreScript(saved, new Map(), ours), run, tools);
    await deleteEmptyTables(f, candidates(f, touched), run, tools);
  }
}

/** Deletes those of `tables` that exist and hold nothing: no rules, no user chains, only ACCEPT policies. */
async function deleteEmptyTables(f: Family, tables: readonly string[], run: CommandRunner, tools: FirewallTools): Promise<void> {
  if (tables.length === 0) return;
  const now = await saveTables(f, run, tools);
  for (const table of tables) {
    const t = now.get(table);
    if (!t || !isEmptyTable(t)) continue;
    const r = await run(tools.nft, ['delete', 'table', f === 4 ? 'ip' : 'ip6', table]);
    // A concurrent writer may have put something in it since: then it stays, which is harmless.
    if (r.code !== 0 && !/No such file|Device or resource busy/.test(r.stderr))
      throw new FirewallCommandError(`${tools.nft} delete table`, r.code, r.stderr);
  }
}
