// QoS enforced by the Linux kernel on the vCPE (paper §3.2.1, for a vCPE without an SDN switch): an HTB tree on the
// WAN interface (the household's uplink) and on the LAN interface (its downlink), each class with an fq_codel leaf
// (RFC 8290) so flows inside a class share fairly and queues stay short (a short FIFO where the kernel lacks it); nftables classifies packets into classes by
// setting `meta priority` (the packet's skb priority, which HTB reads as a class id, so no tc filter is needed).
//
// Classes per direction, rate R = the link's rate:  1:1 root (R) ─┬─ 1:10 priority   (70% guaranteed, prio 0)
//                                                                 ├─ 1:20 normal     (25%, prio 1; unclassified traffic)
//                                                                 ├─ 1:30 background (5%, prio 2)
//                                                                 └─ 1:100+n one per rate-limited target (rate = ceil = limit)
// Every class may borrow up to R; the guaranteed rates decide who wins when the link is full.
//
// Atomicity: the nftables table is replaced in one `nft -f` transaction (delete and re-create in one file: the kernel
// applies all of it or nothing); tc objects are changed with `replace` (a class's rate changes in place, packets in
// its queue stay), and classes no plan names any more are deleted only after nftables stopped sending packets there.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isIPv4 } from 'node:net';
import type { QosBackend, QosClass, QosPlan, QosTarget } from '../types/qos.js';
import { NtmError } from '../types/errors.js';
import type { Logger } from '../util/log.js';

const run = promisify(execFile);

/** The nftables table this backend owns (and nothing else). */
export const QOS_TABLE = 'ntm_qos';

const CLASS_MINOR: Record<QosClass, number> = { priority: 0x10, normal: 0x20, background: 0x30 };
const CLASS_PRIO: Record<QosClass, number> = { priority: 0, normal: 1, background: 2 };
const CLASS_SHARE: Record<QosClass, number> = { priority: 0.7, normal: 0.25, background: 0.05 };
/** Minor ids of per-target classes start here (hex in tc's notation: 1:100 is minor 0x100). */
const LIMITED_BASE = 0x100;

export class QosCommandError extends NtmError {
  override readonly name = 'QosCommandError';
}

type Direction = 'up' | 'down';

/** One direction's tc tree and the nftables rules that feed it, computed from a plan (pure; tested without root). */
export interface DirectionPlan {
  readonly dev: string;
  readonly major: number;
  readonly rateKbit: number;
  /** minor → [rate kbit, ceil kbit, prio] */
  readonly classes: ReadonlyMap<number, readonly [number, number, number]>;
  /** nftables statements (inside the postrouting chain). */
  readonly rules: readonly string[];
}

function classFor(t: QosTarget, dir: Direction, limited: Map<string, number>): number {
  return limited.get(`${t.key}/${dir}`) ?? CLASS_MINOR[t.rule.class];
}

const hex = (n: number): string => n.toString(16);

/** The uplink (WAN egress, handle 1:) and downlink (LAN egress, handle 2:) trees of a plan; absent when not shaped. */
export function directionPlans(plan: QosPlan): DirectionPlan[] {
  const out: DirectionPlan[] = [];
  const dirs: Array<[Direction, string, number, number]> = [
    ['up', plan.wanInterface, 1, plan.link.uplinkKbit],
    ['down', plan.lanInterface, 2, plan.link.downlinkKbit],
  ];
  for (const [dir, dev, major, rate] of dirs) {
    if (rate <= 0 || !dev) continue;
    const classes = new Map<number, readonly [number, number, number]>();
    for (const c of ['priority', 'normal', 'background'] as const) classes.set(CLASS_MINOR[c], [Math.max(8, Math.floor(rate * CLASS_SHARE[c])), rate, CLASS_PRIO[c]]);
    const limited = new Map<string, number>();
    let next = LIMITED_BASE;
    for (const t of plan.targets) {
      const lim = dir === 'up' ? t.rule.uplinkKbit : t.rule.downlinkKbit;
      if (lim === null || lim <= 0) continue;
      const l = Math.min(lim, rate);
      limited.set(`${t.key}/${dir}`, next);
      classes.set(next, [l, l, CLASS_PRIO[t.rule.class]]);
      next++;
    }
    const rules: string[] = [];
    const set = (minor: number) => `meta priority set ${hex(major)}:${hex(minor)}`;
    for (const t of plan.targets) {
      const minor = classFor(t, dir, limited);
      // A device's own traffic: its source on the way out, its destination on the way in (after de-NAT).
      for (const a of t.lanAddresses) {
        const fam = isIPv4(a) ? 'ip' : 'ip6';
        rules.push(dir === 'up' ? `oifname "${dev}" ${fam} saddr ${a} ${set(minor)}` : `oifname "${dev}" ${fam} daddr ${a} ${set(minor)}`);
      }
      // A phone's tunnel datagrams from the agent (only on the uplink: what the phone sends home arrives encrypted
      // and leaves on the LAN as the device's traffic, classified by the device's rule above).
      if (dir === 'up') {
        for (const e of t.tunnelEndpoints) {
          const fam = e.family === 4 ? 'ip' : 'ip6';
          rules.push(`oifname "${dev}" udp sport ${plan.tunnelPort} ${fam} daddr ${e.address} udp dport ${e.port} ${set(minor)}`);
        }
      }
    }
    out.push({ dev, major, rateKbit: rate, classes, rules });
  }
  return out;
}

/** The whole nftables transaction for a plan: the table replaced at once (created first, so the delete never fails). */
export function nftScript(dirs: readonly DirectionPlan[]): string {
  const rules = dirs.flatMap((d) => d.rules);
  // Nothing shaped: no table at all (an agent with QoS unused leaves no trace in the ruleset).
  if (dirs.length === 0) return `table inet ${QOS_TABLE} {}\ndelete table inet ${QOS_TABLE}\n`;
  return [
    `table inet ${QOS_TABLE} {}`,
    `delete table inet ${QOS_TABLE}`,
    `table inet ${QOS_TABLE} {`,
    // Before NAT (srcnat is at 100): a forwarded packet still has its LAN source here.
    '  chain classify {',
    '    type filter hook postrouting priority -150; policy accept;',
    ...rules.map((r) => `    ${r}`),
    '  }',
    '}',
    '',
  ].join('\n');
}

/** A class's leaf: fq_codel (RFC 8290), or a short FIFO on a kernel built without it (CONFIG_NET_SCH_FQ_CODEL). */
export type Leaf = 'fq_codel' | 'pfifo';

/**
 * tc commands (for `tc -batch`) that make the device's tree equal the plan's, minus the deletions (see apply). The
 * root is created only when the device does not have ours yet (HTB cannot `change` its root in place; its classes can).
 */
export function tcScript(d: DirectionPlan, leaf: Leaf, hasRoot: boolean, leaves: ReadonlyMap<string, string> = new Map()): string {
  const m = hex(d.major);
  const lines = [
    ...(hasRoot ? [] : [`qdisc replace dev ${d.dev} root handle ${m}: htb default ${hex(CLASS_MINOR.normal)} r2q 10`]),
    `class replace dev ${d.dev} parent ${m}: classid ${m}:1 htb rate ${d.rateKbit}kbit ceil ${d.rateKbit}kbit`,
  ];
  for (const [minor, [rate, ceil, prio]] of d.classes) {
    lines.push(`class replace dev ${d.dev} parent ${m}:1 classid ${m}:${hex(minor)} htb rate ${rate}kbit ceil ${ceil}kbit prio ${prio} quantum 1514`);
    // A leaf of another kind cannot be replaced in place (the kernel wants the same kind for the same handle).
    const have = leaves.get(`${m}:${hex(minor)}`);
    if (have !== undefined && have !== leaf) lines.push(`qdisc del dev ${d.dev} parent ${m}:${hex(minor)}`);
    lines.push(`qdisc replace dev ${d.dev} parent ${m}:${hex(minor)} handle ${hex(minor)}: ${leaf === 'fq_codel' ? 'fq_codel' : 'pfifo limit 100'}`);
  }
  return lines.join('\n') + '\n';
}

export interface KernelQosOptions {
  readonly log: Logger;
  /** Run commands in this network namespace (tests); the agent runs in the vCPE's own. */
  readonly netns?: string;
}

/** tc HTB + fq_codel + nftables on this host. One apply at a time (calls are chained). */
export class KernelQos implements QosBackend {
  get name(): string {
    return `kernel (tc HTB + ${this.leaf} leaves, nftables)`;
  }
  /** Devices this backend put a root qdisc on (to take it off again at clear()). */
  private readonly shaped = new Set<string>();
  private chain: Promise<void> = Promise.resolve();
  /** fq_codel until the kernel says it has none (then a 100-packet FIFO, logged once). */
  leaf: Leaf = 'fq_codel';

  constructor(private readonly opts: KernelQosOptions) {}

  apply(plan: QosPlan): Promise<void> {
    const p = this.chain.then(() => this.applyNow(plan));
    this.chain = p.catch(() => undefined);
    return p;
  }

  clear(): Promise<void> {
    const p = this.chain.then(() => this.clearNow());
    this.chain = p.catch(() => undefined);
    return p;
  }

  private async cmd(argv: string[]): Promise<string> {
    const full = this.opts.netns ? ['ip', 'netns', 'exec', this.opts.netns, ...argv] : argv;
    try {
      const { stdout } = await run(full[0]!, full.slice(1), { timeout: 10_000 });
      return stdout;
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      throw new QosCommandError(`${argv.join(' ')}: ${(err.stderr ?? err.message).trim()}`);
    }
  }

  private async batch(tool: 'nft' | 'tc', script: string): Promise<void> {
    const file = join(tmpdir(), `ntm-qos-${process.pid}-${tool}-${Date.now()}.txt`);
    await writeFile(file, script, { mode: 0o600 });
    try {
      await this.cmd(tool === 'nft' ? ['nft', '-f', file] : ['tc', '-batch', file]);
    } finally {
      await rm(file, { force: true });
    }
  }

  private async applyNow(plan: QosPlan): Promise<void> {
    const dirs = directionPlans(plan);
    // Classes first (a packet classified into a class that does not exist yet would fall to the default), then the
    // classification in one transaction, then the classes nothing points at any more.
    for (const d of dirs) {
      const hasRoot = await this.hasOurRoot(d.dev, d.major);
      try {
        await this.batch('tc', tcScript(d, this.leaf, hasRoot, await this.leaves(d.dev)));
      } catch (e) {
        if (this.leaf !== 'fq_codel' || !/qdisc kind is unknown/i.test((e as Error).message)) throw e;
        this.leaf = 'pfifo';
        this.opts.log.warn('this kernel has no fq_codel (CONFIG_NET_SCH_FQ_CODEL): QoS classes get a 100-packet FIFO each');
        await this.batch('tc', tcScript(d, this.leaf, await this.hasOurRoot(d.dev, d.major), await this.leaves(d.dev)));
      }
    }
    await this.batch('nft', nftScript(dirs));
    for (const d of dirs) {
      this.shaped.add(d.dev);
      // `tc -j class show` prints no JSON for HTB classes (iproute2 6.1): the text form's "class htb 1:10 parent …".
      const have = [...(await this.cmd(['tc', 'class', 'show', 'dev', d.dev])).matchAll(/^class htb (\S+)/gm)].map((m) => m[1]!);
      const want = new Set([`${hex(d.major)}:1`, ...[...d.classes.keys()].map((k) => `${hex(d.major)}:${hex(k)}`)]);
      for (const c of have) if (!want.has(c)) await this.cmd(['tc', 'class', 'del', 'dev', d.dev, 'classid', c]);
    }
    // A direction not shaped (its rate is 0): its tree goes, also one an earlier run of the agent left.
    for (const [dev, major] of [[plan.wanInterface, 1], [plan.lanInterface, 2]] as const) {
      if (!dev || dirs.some((d) => d.dev === dev)) continue;
      await this.removeTree(dev, major);
    }
    this.opts.log.info('qos applied', { leaf: this.leaf, directions: dirs.map((d) => ({ dev: d.dev, kbit: d.rateKbit, classes: d.classes.size, rules: d.rules.length })) });
  }

  /** parent class → kind of the qdiscs under `dev`'s classes ("1:10" → "fq_codel"). */
  private async leaves(dev: string): Promise<Map<string, string>> {
    const qs = JSON.parse(await this.cmd(['tc', '-j', 'qdisc', 'show', 'dev', dev])) as Array<{ kind: string; parent?: string }>;
    return new Map(qs.filter((q) => q.parent !== undefined).map((q) => [q.parent!, q.kind]));
  }

  private async hasOurRoot(dev: string, major: number): Promise<boolean> {
    const roots = JSON.parse(await this.cmd(['tc', '-j', 'qdisc', 'show', 'dev', dev, 'root']).catch(() => '[]')) as Array<{ kind: string; handle: string }>;
    return roots.some((q) => q.kind === 'htb' && q.handle === `${hex(major)}:`);
  }

  /** Deletes `dev`'s root qdisc if it is ours (HTB with our handle), never someone else's. */
  private async removeTree(dev: string, major: number): Promise<void> {
    if (await this.hasOurRoot(dev, major)) await this.cmd(['tc', 'qdisc', 'del', 'dev', dev, 'root']);
    this.shaped.delete(dev);
  }

  private async clearNow(): Promise<void> {
    await this.batch('nft', nftScript([]));
    for (const dev of [...this.shaped]) await this.removeTree(dev, 1).then(() => this.removeTree(dev, 2));
  }
}
