// Turns a topology plus the options of one run into the exact commands, rulesets and emulator configs; pure, no I/O.
import { TopologyError } from './errors.js';
import type { Family } from './ip.js';
import { NAT_KINDS, type Emulation, type Host, type NatKind, type Topology } from './topology.js';

/** Per-pair overrides of a run; applied to both directions of the pair. */
export interface Impairment {
  rttMs?: number;
  loss?: number;
  jitterMs?: number;
  duplicate?: number;
  reorder?: boolean;
}

export interface UpOptions {
  /** Which delay column of the topology (paper: "today" | "vcpe"); default: the file's defaultColumn. */
  column?: string;
  /** NAT router → kind, overriding the file's default. */
  nat?: Record<string, NatKind>;
  /** false: no emulated delay, loss or duplication at all (throughput benchmarks). Default true. */
  delays?: boolean;
  /** Namespace prefix ([a-z][a-z0-9]{0,11}); default: a fresh unique one ("nt" + 6 hex digits). */
  prefix?: string;
  /** "SITE-SITE" at an emulating router → overrides, e.g. {"vcpe-lte": {loss: 0.05}}. */
  impair?: Record<string, Impairment>;
}

export interface Resolved {
  readonly column: string;
  readonly nat: Readonly<Record<string, NatKind>>;
  readonly delays: boolean;
  readonly impair: Readonly<Record<string, Impairment>>;
}

export const PREFIX_RE = /^[a-z][a-z0-9]{0,11}$/;
export const HOST_RE = /^[a-z][a-z0-9]{0,14}$/;

export function nsName(prefix: string, host: string): string {
  return `${prefix}-${host}`;
}

const IMPAIR_KEYS = ['rttMs', 'loss', 'jitterMs', 'duplicate', 'reorder'] as const;

export function resolveOptions(topo: Topology, opts: UpOptions): Resolved {
  const column = opts.column ?? topo.defaultColumn;
  if (!topo.columns.includes(column)) {
    throw new TopologyError(`topology ${topo.name} has no delay column "${column}" (columns: ${topo.columns.join(', ')})`);
  }
  const nat: Record<string, NatKind> = {};
  for (const h of topo.hosts.values()) if (h.nat) nat[h.name] = h.nat.kind;
  for (const [router, kind] of Object.entries(opts.nat ?? {})) {
    if (nat[router] === undefined) {
      throw new TopologyError(`--nat ${router}=${kind}: ${router} is not a NAT router of ${topo.name} (NAT routers: ${Object.keys(nat).join(', ') || 'none'})`);
    }
    if (!NAT_KINDS.includes(kind)) throw new TopologyError(`--nat ${router}=${kind}: the kinds are ${NAT_KINDS.join(', ')}`);
    nat[router] = kind;
  }
  const impair = opts.impair ?? {};
  for (const [key, imp] of Object.entries(impair)) {
    if (!topo.emulation.some((e) => findPair(e, key))) {
      const known = topo.emulation.flatMap((e) => e.pairs.map((p) => `${p.a}-${p.b}`));
      throw new TopologyError(`impairment "${key}": no such pair of sites in ${topo.name} (pairs: ${known.join(', ')})`);
    }
    for (const k of Object.keys(imp)) {
      if (!(IMPAIR_KEYS as readonly string[]).includes(k)) throw new TopologyError(`impairment "${key}": unknown key "${k}" (keys: ${IMPAIR_KEYS.join(', ')})`);
    }
    for (const k of ['loss', 'duplicate'] as const) {
      const v = imp[k];
      if (v !== undefined && !(v >= 0 && v <= 1)) throw new TopologyError(`impairment "${key}": ${k} must be a probability in 0..1`);
    }
    for (const k of ['rttMs', 'jitterMs'] as const) {
      const v = imp[k];
      if (v !== undefined && !(v >= 0 && v <= 10_000)) throw new TopologyError(`impairment "${key}": ${k} must be 0..10000 ms`);
    }
  }
  return { column, nat, delays: opts.delays ?? true, impair };
}

function findPair(e: Emulation, key: string): Emulation['pairs'][number] | undefined {
  const [a, b] = key.split('-');
  return e.pairs.find((p) => (p.a === a && p.b === b) || (p.a === b && p.b === a));
}

/**
 * What a pass through NFQUEUE costs by itself (waking the emulator, the verdict, re-injection), measured with tcpdump
 * on the router: 0.15-0.2 ms on the 2-core test machine. Subtracted from every hold so a direction's total comes out
 * at its nominal delay instead of systematically above it.
 */
export const EMULATOR_OVERHEAD_US = 150;

/** One direction of one pair, as the emulator and the NFQUEUE rules see it. */
export interface DirectedPair {
  /** NFQUEUE number inside the router's namespace; -1 when nothing needs the emulator (only duplication). */
  readonly queue: number;
  /** "a>b": from site a to site b. */
  readonly name: string;
  readonly inIf: string;
  readonly outIf: string;
  /** The nominal one-way delay (half the pair's RTT). */
  readonly delayUs: number;
  /** How long the emulator holds each packet: the nominal delay less the emulator's own path cost. */
  readonly holdUs: number;
  readonly jitterUs: number;
  readonly loss: number;
  readonly reorder: boolean;
  readonly duplicate: number;
  /** Next hop beyond outIf, for duplicates (nft "dup to" sends the copy there). */
  readonly gateway4: string | undefined;
  readonly gateway6: string | undefined;
}

export interface EmulatorConfig {
  readonly router: string;
  readonly statsFile: string;
  readonly readyFile: string;
  readonly pairs: readonly DirectedPair[];
}

function peerAddr(topo: Topology, router: string, iface: string, family: Family): string | undefined {
  const mine = (topo.ifaces.get(router) ?? []).find((i) => i.name === iface);
  if (!mine?.peer) return undefined;
  const peer = (topo.ifaces.get(mine.peer.host) ?? []).find((i) => i.name === mine.peer?.iface);
  return peer?.addrs.find((c) => c.family === family)?.address;
}

/** Every direction of every pair that has something to emulate, in a stable order; queues numbered from 0. */
export function directedPairs(topo: Topology, e: Emulation, r: Resolved): DirectedPair[] {
  const out: DirectedPair[] = [];
  let queue = 0;
  for (const p of e.pairs) {
    const imp = r.impair[`${p.a}-${p.b}`] ?? r.impair[`${p.b}-${p.a}`] ?? {};
    const rtt = imp.rttMs ?? p.rttMs[r.column] ?? 0;
    const jitterMs = imp.jitterMs ?? p.jitterMs;
    const loss = imp.loss ?? p.loss;
    const duplicate = imp.duplicate ?? p.duplicate;
    const reorder = imp.reorder ?? p.reorder;
    for (const [from, to] of [
      [p.a, p.b],
      [p.b, p.a],
    ] as const) {
      const inIf = e.sites[from] ?? '';
      const outIf = e.sites[to] ?? '';
      // Each direction carries half the round trip: Table 1 gives RTTs, not one-way delays.
      const delayUs = Math.round((rtt * 1000) / 2);
      const jitterUs = Math.round(jitterMs * 1000);
      const needsQueue = delayUs > 0 || jitterUs > 0 || loss > 0;
      if (!needsQueue && duplicate === 0) continue;
      out.push({
        queue: needsQueue ? queue++ : -1,
        name: `${from}>${to}`,
        inIf,
        outIf,
        delayUs,
        holdUs: Math.max(0, delayUs - EMULATOR_OVERHEAD_US),
        jitterUs,
        loss,
        reorder,
        duplicate,
        gateway4: peerAddr(topo, e.router, outIf, 4),
        gateway6: peerAddr(topo, e.router, outIf, 6),
      });
    }
  }
  return out;
}

/** iptables-restore input: hand each delayed (in, out) pair to its queue. No --queue-bypass: a dead emulator drops, visibly. */
export function nfqueueRules(pairs: readonly DirectedPair[]): string {
  const lines = ['*mangle'];
  for (const p of pairs) {
    if (p.queue < 0) continue;
    lines.push(`-A FORWARD -i ${p.inIf} -o ${p.outIf} -m comment --comment "ntm-testbed ${p.name}" -j NFQUEUE --queue-num ${p.queue}`);
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}

const DUP_MARK_BASE = 0x4e540000;

/**
 * nft ruleset for duplication, or '' when no pair duplicates. The copy is made in postrouting, i.e. after the
 * emulator's delay, so original and duplicate leave together. The mark carries the pair from forward (where the
 * input interface is known) to postrouting (where it is not).
 */
export function dupRuleset(pairs: readonly DirectedPair[]): string {
  const dups = pairs.filter((p) => p.duplicate > 0);
  if (dups.length === 0) return '';
  const tables: string[] = [];
  for (const [family, key] of [
    ['ip', 'gateway4'],
    ['ip6', 'gateway6'],
  ] as const) {
    const usable = dups.filter((p) => p[key] !== undefined);
    if (usable.length === 0) continue;
    const marks = usable.map((p, i) => ({ p, mark: `0x${(DUP_MARK_BASE + i + 1).toString(16)}` }));
    tables.push(
      `table ${family} ntm_dup {`,
      '  chain forward {',
      '    type filter hook forward priority mangle - 10; policy accept;',
      ...marks.map(({ p, mark }) => `    iifname "${p.inIf}" oifname "${p.outIf}" meta mark set ${mark}`),
      '  }',
      '  chain postrouting {',
      '    type filter hook postrouting priority mangle; policy accept;',
      ...marks.map(
        ({ p, mark }) =>
          `    meta mark ${mark}${p.duplicate < 1 ? ` numgen random mod 1000000 < ${Math.round(p.duplicate * 1_000_000)}` : ''} dup to ${p[key]} device "${p.outIf}"`,
      ),
      '  }',
      '}',
    );
  }
  return tables.join('\n') + '\n';
}

/**
 * nft ruleset of a NAT router: masquerade to the WAN, and drop what arrives on the WAN unsolicited, like a home router.
 * The kinds, in RFC 4787's terms (§4.1 mapping, §5 filtering):
 *   eim              endpoint-independent mapping, address-and-port-dependent filtering; the router's own ports stay
 *                    open to the WAN, so an unsolicited packet to it leaves a conntrack entry (a port clash, see
 *                    docs/protocol.md §3.4)
 *   port-restricted  the same mapping and filtering, and unsolicited WAN packets to the router itself are dropped
 *                    before conntrack keeps them (a home router's input firewall)
 *   full-cone        endpoint-independent mapping and filtering: once an inside endpoint sent out through a mapping,
 *                    anyone may send to it (the `cone` map, learnt from outgoing packets after translation)
 *   symmetric        a new mapping per destination (fully random ports)
 */
export function natRuleset(host: Host, kind: NatKind): string {
  const wan = host.nat?.wan ?? '';
  // eim: Linux keeps the source port when it is free, so one socket gets one mapping whatever the destination.
  // symmetric: fully-random draws a new port per connection, so each destination sees a different mapping.
  const masq = kind === 'symmetric' ? 'masquerade fully-random' : 'masquerade';
  const cone = kind === 'full-cone';
  const guarded = kind === 'full-cone' || kind === 'port-restricted';
  return [
    'table ip ntm_nat {',
    ...(cone ? ['  map cone {', '    type inet_service : ipv4_addr . inet_service', '    flags dynamic,timeout', '    timeout 180s', '  }'] : []),
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    `    oifname "${wan}" ${masq}`,
    '  }',
    ...(cone
      ? [
          // After translation: the outside port → the inside endpoint it stands for, refreshed by every packet out.
          '  chain cone_learn {',
          '    type filter hook postrouting priority srcnat + 10; policy accept;',
          `    oifname "${wan}" ct direction original meta l4proto udp update @cone { udp sport : ct original ip saddr . ct original proto-src }`,
          '  }',
          '  chain prerouting {',
          '    type nat hook prerouting priority dstnat; policy accept;',
          `    iifname "${wan}" meta l4proto udp dnat ip to udp dport map @cone`,
          '  }',
        ]
      : []),
    '}',
    'table inet ntm_filter {',
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    `    iifname "${wan}" ct state established,related accept`,
    ...(cone ? [`    iifname "${wan}" ct status dnat accept`] : []),
    `    iifname "${wan}" counter drop comment "unsolicited from the WAN"`,
    '  }',
    ...(guarded
      ? [
          '  chain input {',
          '    type filter hook input priority filter; policy accept;',
          `    iifname "${wan}" ct state established,related accept`,
          `    iifname "${wan}" meta l4proto udp counter drop comment "unsolicited to the router"`,
          '  }',
        ]
      : []),
    '}',
    '',
  ].join('\n');
}

/**
 * Shell run in a NAT router that rebinds its UDP mappings (RFC 4787 §4.3: a mapping expired or the NAT restarted while
 * a flow lives): every later packet out leaves from outside port `port` (one port, so the mapping stays
 * endpoint-independent; symmetric: a range from it), and every mapping the router had is forgotten.
 */
export function rebindScript(host: Host, kind: NatKind, port: number): string {
  const wan = host.nat?.wan ?? '';
  const to = kind === 'symmetric' ? `:${port}-${port + 999} fully-random` : `:${port}`;
  // One nft transaction: the new masquerade, and (full-cone) the learning of new mappings only, from the new port, so a
  // packet of a flow not yet forgotten cannot teach the map its old port again before conntrack forgets it.
  const nft = [
    'flush chain ip ntm_nat postrouting',
    `add rule ip ntm_nat postrouting oifname "${wan}" meta l4proto udp masquerade to ${to}`,
    `add rule ip ntm_nat postrouting oifname "${wan}" masquerade`,
    ...(kind === 'full-cone'
      ? [
          'flush chain ip ntm_nat cone_learn',
          `add rule ip ntm_nat cone_learn oifname "${wan}" ct direction original udp sport ${port} update @cone { udp sport : ct original ip saddr . ct original proto-src }`,
          'flush map ip ntm_nat cone',
        ]
      : []),
  ];
  return [
    'set -e',
    `nft -f - <<'NFT'`,
    ...nft,
    'NFT',
    // conntrack exits 1 when there was nothing to delete.
    'conntrack -D -p udp >/dev/null 2>&1 || true',
    '',
  ].join('\n');
}

/**
 * Shell run in a NAT router that changes its kind while flows live (a router reconfigured or replaced, e.g. a CGNAT
 * moving a subscriber to endpoint-independent mapping): the whole ruleset is replaced in one nft transaction and every
 * UDP mapping is forgotten, so each flow's next packet gets a mapping of the new kind.
 */
export function changeNatScript(host: Host, kind: NatKind): string {
  return [
    'set -e',
    `nft -f - <<'NFT'`,
    'delete table ip ntm_nat',
    'delete table inet ntm_filter',
    natRuleset(host, kind) + 'NFT',
    'conntrack -D -p udp >/dev/null 2>&1 || true',
    '',
  ].join('\n');
}

const PRELUDE = [
  'set -e',
  'run() { "$@" || { echo "failed: $*" >&2; exit 1; }; }',
  'w() { echo "$2" > "/proc/sys/net/$1" || { echo "failed: sysctl net/$1=$2" >&2; exit 1; }; }',
];

/** Root-namespace `ip -batch` input creating namespaces and veth pairs; the veth ends are created inside their namespaces. */
export function createBatch(topo: Topology, prefix: string): string {
  const lines: string[] = [];
  for (const h of topo.hosts.keys()) lines.push(`netns add ${nsName(prefix, h)}`);
  for (const l of topo.links) {
    lines.push(`link add ${l.a.name} netns ${nsName(prefix, l.a.host)} type veth peer name ${l.b.name} netns ${nsName(prefix, l.b.host)}`);
  }
  return lines.join('\n') + '\n';
}

function forwards(h: Host): boolean {
  return h.role !== 'host';
}

/**
 * Phase 1 inside one namespace: sysctls, bridges, addresses, links up. Phase 2 (after every namespace finished
 * phase 1, so gateways are up): routes and NAT rules.
 */
export function setupScript(topo: Topology, hostName: string, r: Resolved, uplinks: Readonly<Record<string, string>>, phase: 1 | 2): string {
  const h = topo.hosts.get(hostName);
  if (!h) throw new TopologyError(`unknown host ${hostName}`);
  const ifaces = topo.ifaces.get(hostName) ?? [];
  const active = uplinks[hostName];
  const inactive = new Set(h.uplinks.filter((u) => u.network !== active).map((u) => u.iface));
  const s = [...PRELUDE];
  if (phase === 1) {
    s.push('w ipv4/conf/all/rp_filter 2', 'w ipv4/conf/default/rp_filter 2');
    if (forwards(h)) s.push('w ipv4/ip_forward 1');
    for (const b of ifaces.filter((i) => i.kind === 'bridge')) s.push(`run ip link add ${b.name} type bridge`);
    if (h.ipv6) {
      // DAD would leave fresh addresses "tentative" for a second or two; nothing here can collide.
      s.push('w ipv6/conf/all/accept_dad 0', 'w ipv6/conf/default/accept_dad 0');
      for (const i of ifaces) s.push(`w ipv6/conf/${i.name}/accept_dad 0`);
      if (forwards(h)) s.push('w ipv6/conf/all/forwarding 1');
    } else {
      // An IPv4-only *network*, not an IPv6-less host: the links get no IPv6 (not even link-local), while the stack
      // stays, as on a real phone on an IPv4-only carrier (its NTMobile virtual IPv6 address lives on a later device).
      for (const i of ifaces) s.push(`w ipv6/conf/${i.name}/disable_ipv6 1`);
    }
    s.push('run ip link set lo up');
    for (const i of ifaces) {
      if (i.bridge) s.push(`run ip link set ${i.name} master ${i.bridge}`);
      for (const c of i.addrs) s.push(`run ip addr add ${c.address}/${c.prefix} dev ${i.name}${c.family === 6 ? ' nodad' : ''}`);
    }
    for (const i of ifaces) if (!inactive.has(i.name)) s.push(`run ip link set ${i.name} up`);
  } else {
    for (const rt of h.routes) s.push(`run ip -${rt.family} route add ${rt.to} via ${rt.via}${rt.dev ? ` dev ${rt.dev}` : ''}`);
    const up = h.uplinks.find((u) => u.network === active);
    if (up) s.push(`run ip -${up.family} route add default via ${up.via} dev ${up.iface}`);
    const kind = r.nat[hostName];
    if (h.nat && kind) s.push(`nft -f - <<'NFT' || { echo "failed: nft ruleset" >&2; exit 1; }`, natRuleset(h, kind) + 'NFT');
  }
  return s.join('\n') + '\n';
}

/** Script switching a multi-homed host to another uplink: new link up, default route moved, old links down. */
export function moveScript(h: Host, network: string): string {
  const target = h.uplinks.find((u) => u.network === network);
  if (!target) throw new TopologyError(`${h.name} has no uplink "${network}" (uplinks: ${h.uplinks.map((u) => u.network).join(', ') || 'none'})`);
  const s = [...PRELUDE, `run ip link set ${target.iface} up`, `run ip -${target.family} route replace default via ${target.via} dev ${target.iface}`];
  for (const u of h.uplinks) if (u.iface !== target.iface) s.push(`run ip link set ${u.iface} down`);
  return s.join('\n') + '\n';
}
