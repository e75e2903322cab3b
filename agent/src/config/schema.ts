// Configuration schema (STYLE habit 7): every key has a default and a documented meaning; each role gets one frozen object.
// Sources, later ones winning: defaults < JSON file (--config) < `--set key=value` flags < role-specific CLI flags.
import { readFileSync } from 'node:fs';
import { ConfigError } from '../types/errors.js';
import { parseEndpoint } from '../protocol/endpoint.js';
import { parseCidr } from '../protocol/ip.js';
import type { Endpoint } from '../types/net.js';

type Parser<T> = (v: unknown, key: string) => T;

interface Field<T> {
  readonly doc: string;
  readonly def: T;
  readonly parse: Parser<T>;
}

const str: Parser<string> = (v, k) => {
  if (typeof v !== 'string') throw new ConfigError(k, 'must be a string');
  return v;
};
const num =
  (min: number, max: number): Parser<number> =>
  (v, k) => {
    const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isFinite(n) || n < min || n > max)
      throw new ConfigError(k, `must be a number in [${min}, ${max}]`);
    return n;
  };
const bool: Parser<boolean> = (v, k) => {
  if (v === true || v === 'true' || v === '1') return true;
  if (v === false || v === 'false' || v === '0') return false;
  throw new ConfigError(k, 'must be true or false');
};
const list =
  <T>(item: Parser<T>): Parser<T[]> =>
  (v, k) => {
    const arr = typeof v === 'string' ? (v.trim() === '' ? [] : v.split(',')) : v;
    if (!Array.isArray(arr)) throw new ConfigError(k, 'must be a list (JSON array or comma-separated)');
    return arr.map((x, i) => item(typeof x === 'string' ? x.trim() : x, `${k}[${i}]`));
  };
const endpointP: Parser<Endpoint> = (v, k) => {
  try {
    return parseEndpoint(str(v, k));
  } catch (e) {
    throw new ConfigError(k, (e as Error).message);
  }
};
const cidr =
  (family: 4 | 6): Parser<string> =>
  (v, k) => {
    if (v === '') return '';
    try {
      const c = parseCidr(str(v, k));
      if (c.family !== family) throw new Error(`must be an IPv${family} prefix`);
      return c.text;
    } catch (e) {
      throw new ConfigError(k, (e as Error).message);
    }
  };
/** "0x<40 hex>@addr:port": a peer known by ID (its key is checked against the ID on first contact). */
export interface PeerRef {
  readonly id: string;
  readonly endpoint: Endpoint;
}
const peerRef: Parser<PeerRef> = (v, k) => {
  const s = str(v, k);
  const at = s.indexOf('@');
  const id = s.slice(0, at).toLowerCase();
  if (at < 0 || !/^0x[0-9a-f]{40}$/.test(id)) throw new ConfigError(k, 'must be 0x<40 hex digits>@addr:port');
  return { id, endpoint: endpointP(s.slice(at + 1), k) };
};
const idP: Parser<string> = (v, k) => {
  const s = str(v, k).toLowerCase();
  if (!/^0x[0-9a-f]{40}$/.test(s)) throw new ConfigError(k, 'must be an ID: 0x and 40 hex digits');
  return s;
};

const oneOf =
  <T extends string>(values: readonly T[]): Parser<T> =>
  (v, k) => {
    if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) throw new ConfigError(k, `must be one of ${values.join(', ')}`);
    return v as T;
  };

function f<T>(def: T, parse: Parser<T>, doc: string): Field<T> {
  return { def, parse, doc };
}

/** Where the EVM ledger is: the same keys for a DC and an RS (their `--chain-*` flags). */
function chainKeys(deployBlockDoc: string) {
  return {
    chainRpc: f('', str, 'JSON-RPC URL of the EVM chain (ledger "evm").'),
    chainContract: f('', (v, k) => (v === '' ? '' : idP(v, k)), 'Address of the NtmRegistry contract (ledger "evm").'),
    chainDeployBlock: f(0, num(0, 2 ** 53), deployBlockDoc),
  };
}

/** The schema: section → key → field. Defaults are what a single-host deployment needs. */
export const SCHEMA = {
  dc: {
    listen: f('[::]:7100', str, 'UDP address the DC listens on for terminals and peer DCs (dual-stack "[::]:port").'),
    probePort: f(0, num(0, 65535), 'Second UDP port for NAT-mapping probes; 0 means listen port + 1.'),
    advertise: f<string[]>([], list(str), 'Addresses other DCs and terminals use to reach this DC ("addr:port"); empty: derived from listen.'),
    key: f('dc.key', str, 'Identity file (secp256k1 key pair); created on first start. Relative to dataDir.'),
    dataDir: f('/var/lib/ntm/dc', str, 'Directory of the DC database (SQLite, WAL) and its key.'),
    virtualV4: f('198.18.0.0/15', cidr(4), 'IPv4 range terminals\' virtual addresses come from (RFC 2544 benchmarking space: not used by home LANs or CGNAT 100.64/10).'),
    poolV4: f('', cidr(4), 'This DC\'s slice of virtualV4; empty: a slice of poolV4Length bits chosen from the DC\'s ID. DCs that talk to each other need disjoint slices.'),
    poolV4Length: f(16, num(8, 30), 'Prefix length of the slice chosen when poolV4 is empty: 16 for an ISP\'s open DC (65,533 terminals; the default range holds two such slices, so several DCs name theirs), 24 for a household (the agent\'s default: 253 devices and phones).'),
    virtualV6: f('fd4e:544d::/32', cidr(6), 'IPv6 range of virtual addresses: an RFC 4193 ULA prefix whose global ID starts 4e:544d ("NTM"), so it never meets a home LAN\'s own ULA by accident.'),
    poolV6: f('', cidr(6), 'This DC\'s slice of virtualV6; empty: a /48 chosen from the DC\'s ID.'),
    keepaliveS: f(20, num(1, 3600), 'Keep-alive period for terminals behind a NAT (seconds); terminals not behind NAT get none.'),
    expireAfterS: f(30 * 86400, num(0, 10 * 365 * 86400), 'A terminal not heard from for this long (seconds of the DC running: a clock jump or downtime expires nobody) loses its virtual address, which returns to the pool; its Node Transactions stay in the ledger, and it gets an address again (maybe another) when it comes back. 0: never (the agent\'s default: a household\'s devices keep theirs until removed).'),
    registrationTtlS: f(600, num(10, 86400 * 30), 'A terminal silent this long is considered offline (its address stays reserved).'),
    freshnessS: f(60, num(1, 3600), 'Largest accepted clock difference of a Node Transaction timestamp (replay/freshness).'),
    newPerSourceBurst: f(10, num(1, 1_000_000), 'First-time registrations one source (IPv4 address, IPv6 /64) may make at once; each costs an ECDH and, once admitted, an address.'),
    newPerSourcePerMin: f(10, num(1, 1_000_000), 'First-time registrations per minute one source may make, sustained.'),
    cookieAbovePerSec: f(
      100,
      num(0, 1_000_000),
      'Registrations from unknown IDs per second above which the DC is under load: each such request then must echo a cookie the DC sends to its source address (WireGuard\'s cookie reply) before it costs an ECDH. 0: always.',
    ),
    limitSources: f(100_000, num(100, 10_000_000), 'Sources the per-source limits track at once (bounded memory); when full, new sources wait.'),
    ecWorkers: f(
      0,
      num(0, 64),
      'Worker threads for a first-time registration\'s EC work (the ECDH for K_ss and the Node Transaction\'s signature, ~40% of the DC\'s CPU per new terminal), beside the event loop: for a DC with cores to spare. 0: on the event loop.',
    ),
    workers: f(
      1,
      num(1, 64),
      'DC processes sharing the listen and probe ports (SO_REUSEPORT: the kernel spreads terminals over them by address) and one ledger (dc.db in WAL mode, one writer at a time): for a DC with cores to spare (issue 15; README "A DC on several cores"). Each takes every N-th address of the pool. 1: one process, as before.',
    ),
    peers: f<PeerRef[]>([], list(peerRef), 'Other DCs: "0xID@addr:port". Node Transactions are replicated to them; directions to their terminals go through them.'),
    relays: f<PeerRef[]>([], list(peerRef), 'Relay Servers this DC may route through: "0xID@addr:port" (one entry per address family).'),
    acceptRelays: f<string[]>([], list(idP), 'IDs of Relay Servers this DC takes when they announce themselves (their signed HELLO and load reports, paper §3.1): no static address needed; one silent for relayForgetS is forgotten.'),
    relayForgetS: f(30, num(2, 86400), 'An announced RS not heard from (HELLO or load report) this long is forgotten (seconds).'),
    relayPingS: f(2, num(1, 3600), 'Period of the DC\'s RS_PINGs to each RS it knows (its own RTT to the RS, a stand-in for ends that did not measure theirs).'),
    relayQuotaBytes: f(10 * 1024 ** 3, num(0, 2 ** 53), 'Bytes an RS may relay for one tunnel (written into the ticket).'),
    relayQuotaPackets: f(20_000_000, num(0, 2 ** 53), 'Packets an RS may relay for one tunnel.'),
    relayTicketS: f(24 * 3600, num(10, 30 * 86400), 'Lifetime of a relay ticket (seconds).'),
    ledger: f<'sqlite' | 'evm'>('sqlite', oneOf(['sqlite', 'evm'] as const), 'Where Node Transactions are recorded: "sqlite" (a hash chain in the DC\'s database: one household) or "evm" (the NtmRegistry contract at chainContract on chainRpc: DCs find each other, their address blocks and the Relay Servers that announce themselves to them there, docs/ledger.md).'),
    ...chainKeys('Block the contract was deployed in: where a DC with an empty cache starts reading its events.'),
  },
  rs: {
    listen: f('[::]:7200', str, 'UDP address the Relay Server listens on (dual-stack).'),
    key: f('rs.key', str, 'Identity file of the RS; relative to dataDir.'),
    dataDir: f('/var/lib/ntm/rs', str, 'Directory for the RS key.'),
    trust: f<string[]>([], list(idP), 'IDs of DCs whose tickets this RS honours (no open relay). Empty: the DCs in reportTo.'),
    reportTo: f<PeerRef[]>([], list(peerRef), 'DCs this RS reports its load to ("0xID@addr:port").'),
    ledger: f<'none' | 'evm'>('none', oneOf(['none', 'evm'] as const), 'Where this RS announces itself (paper §3.1): "none" (its HELLOs alone: the DC takes it if its ID is in dc.acceptRelays) or "evm" (also on the NtmRegistry contract, from its own account, for the DC `dc`: a DC on that ledger takes it without acceptRelays; withdrawn at a clean stop, docs/ledger.md).'),
    dc: f('', (v, k) => (v === '' ? '' : idP(v, k)), 'The DC this RS announces itself to on the chain (ledger "evm"); empty: the first reportTo DC. Not in reportTo: it reports to the first address of the DC\'s record on the chain.'),
    ...chainKeys('Accepted for the same flags as `ntm dc`; the RS reads the contract\'s state, not its events.'),
    reportS: f(5, num(1, 600), 'Load report period (seconds).'),
    capacityTunnels: f(10_000, num(1, 10_000_000), 'Tunnels this RS accepts; its load is reported as a fraction of it.'),
    activeS: f(30, num(1, 86400), 'A tunnel counts toward the reported load while it relayed a frame (or bound) within this many seconds: what the DC weighs, and what tells an autoscaler the RS is idle.'),
    pendingFrames: f(8, num(0, 1024), 'Frames held per tunnel while waiting for the other end to bind.'),
    bindPerSourceBurst: f(100, num(1, 1_000_000), 'RELAY_BINDs one source (IPv4 address, IPv6 /64) may have checked at once; each costs a signature recovery or two. Many terminals behind one CGNAT address share it.'),
    bindPerSourcePerMin: f(1200, num(1, 10_000_000), 'RELAY_BINDs per minute one source may have checked, sustained.'),
    newTunnelsPerSourceBurst: f(50, num(1, 1_000_000), 'New relayed tunnels one source may open at once (each holds a slot of capacityTunnels until its ticket expires).'),
    newTunnelsPerSourcePerMin: f(120, num(1, 10_000_000), 'New relayed tunnels per minute one source may open, sustained.'),
    limitSources: f(100_000, num(100, 10_000_000), 'Sources the per-source limits track at once (bounded memory); when full, new sources wait.'),
  },
  rsscale: {
    max: f(0, num(0, 64), 'Relay Server instances the autoscaler on the vCPE may run beside the DC (paper §3.1); 0: no autoscaler.'),
    min: f(0, num(0, 64), 'Instances it keeps running whatever the load (started with the DC).'),
    upAt: f(0.6, num(0.01, 1), 'Relayed load (active tunnels / capacity over the RSs not draining) from which another instance starts.'),
    downAt: f(0.25, num(0, 1), 'The newest instance is drained once the load would stay under this fraction of the capacity left without it, for idleS.'),
    idleS: f(30, num(1, 86400), 'How long the load must stay low before an instance is drained (seconds).'),
    drainMaxS: f(600, num(1, 86400), 'A draining instance is retired when none of its tunnels is active any more, or after this long (seconds).'),
    backend: f<'process' | 'systemd'>('process', oneOf(['process', 'systemd'] as const), 'How instances run: "process" (child processes of this one) or "systemd" (transient units through systemd-run: the image).'),
    basePort: f(7210, num(1, 65535), 'UDP port of the first instance; instance N listens on basePort + N - 1.'),
    capacityTunnels: f(1000, num(1, 10_000_000), 'Each instance\'s rs.capacityTunnels.'),
    activeS: f(30, num(1, 86400), 'Each instance\'s rs.activeS.'),
    reportS: f(5, num(1, 600), 'Each instance\'s rs.reportS.'),
    dataDir: f('', str, 'Where the instances keep their keys (one directory each); empty: rs-scale/ in the DC\'s data directory.'),
  },
  terminal: {
    dc: f('', str, 'The managing DC: "0xID@addr:port" (also given by an enrollment token).'),
    key: f('terminal.key', str, 'Identity file of this terminal; relative to dataDir.'),
    dataDir: f('/var/lib/ntm/terminal', str, 'Directory for the terminal key and state.'),
    listen: f('[::]:0', str, 'UDP address of the terminal\'s one socket (port 0: any).'),
    name: f('', str, 'Name to register with the DC (reachable as NAME.ntm by peers of that DC).'),
    dataplane: f(true, bool, 'Carry IP packets of the virtual address on this host (NFQUEUE + iptables); false: signalling only.'),
    queueOut: f(7301, num(0, 65535), 'NFQUEUE number for outgoing packets to virtual addresses.'),
    queueIn: f(7302, num(0, 65535), 'NFQUEUE number for arriving tunnel packets.'),
    queueTcp: f(7303, num(0, 65535), 'NFQUEUE number for outgoing TCP to virtual addresses, handed over unsegmented (up to 64 KB, GSO) and cut into segments by the data plane; 0: TCP goes to queueOut, segmented by the kernel.'),
    mtu: f(1380, num(576, 9000), 'MTU of the virtual interface (inner packets); TCP MSS is clamped to fit.'),
    sealWholeGso: f(true, bool, 'With queueTcp: a GSO packet goes to the socket whole, which cuts it into segments and seals them on its sealing thread (one JavaScript call and one keypair check per 64 KB, as wireguard-go\'s TSO path); false: the queue cuts it and each segment is sealed on its own.'),
    receiveTun: f('ntmrx%d', str, 'TUN device (virtio-net header, TSO) through which decrypted TCP reaches this host, the segments of a flow coalesced into packets of up to 64 KB as GRO does; "%d": the kernel numbers it. Empty: a raw socket carries every packet, one by one (also the fallback where the device cannot be made).'),
    device: f('ntm0', str, 'Name of the (detached TUN) device that holds the virtual addresses and the routes to peers.'),
    virtualRanges: f<string[]>(['198.18.0.0/15', 'fd4e:544d::/32'], list(str), 'Virtual address ranges routed into tunnels (all DCs\' pools lie inside).'),
    dns: f('127.0.0.1:53', str, 'Where the terminal answers DNS for *.ntm names ("" disables).'),
    dnsUpstream: f(
      '',
      str,
      'Resolver for names outside .ntm, ADDR:PORT ("none": refuse them); empty: the first nameserver of /etc/resolv.conf at start that is not this listener. Where systemd-resolved runs, it keeps resolving and routes only .ntm to us (resolvectl domain DEVICE ~ntm).',
    ),
    statusSocket: f('', str, 'Unix socket for `ntm status`; empty: dataDir/terminal.sock.'),
    punchTimeoutMs: f(1500, num(100, 60000), 'How long hole punching may take before the tunnel falls back to the RS.'),
    requestDeadlineMs: f(10000, num(100, 600000), 'Overall deadline of one signalling request (retransmissions included).'),
    moveCheckMs: f(1000, num(50, 60000), 'Address-change poll period; netlink events usually notice a move sooner.'),
    tunnelKeepaliveS: f(15, num(1, 600), 'Keep-alive period inside tunnels that cross a NAT.'),
    rekeyAfterMs: f(120_000, num(500, 86_400_000), 'Age of a tunnel keypair at which the initiator starts a new handshake (WireGuard\'s REKEY_AFTER_TIME); shorter only for tests.'),
    rejectAfterMs: f(180_000, num(750, 86_400_000), 'Age at which a tunnel keypair is refused (REJECT_AFTER_TIME); must exceed rekeyAfterMs.'),
  },
  agent: {
    dataDir: f('/var/lib/ntm/agent', str, 'Directory of the agent database (pairings, phones, grants, web users).'),
    household: f('', str, 'The household\'s name the family sees (set by the ISP\'s provisioning); empty: keep the stored one ("Home").'),
    lanInterface: f('', str, 'LAN interface of the vCPE (for discovery and rules); empty: autodetect the interface of lanPrefix.'),
    lanPrefix: f('', str, 'The household LAN prefix(es) ("192.168.1.0/24,fd00:1::/64"); empty: autodetect.'),
    listen: f('[::]:7300', str, 'UDP address of the agent\'s tunnel socket (all paired appliances share it).'),
    advertise: f<string[]>([], list(str), 'The vCPE\'s WAN addresses as phones reach them ("addr"); empty: the source addresses of the default routes.'),
    rs: f(true, bool, 'Run the embedded Relay Server (for phones that cannot reach each other directly).'),
    dataplane: f(true, bool, 'Carry appliances\' packets (NFQUEUE + iptables); false: signalling only (tests of the control plane).'),
    discoverS: f(10, num(1, 3600), 'LAN discovery period (neighbour table, mDNS), seconds.'),
    queueOut: f(7311, num(0, 65535), 'NFQUEUE number for LAN → tunnel packets.'),
    queueIn: f(7312, num(0, 65535), 'NFQUEUE number for tunnel → LAN packets.'),
    queueTcp: f(7313, num(0, 65535), 'NFQUEUE number for LAN → tunnel TCP, handed over unsegmented (up to 64 KB, GRO/GSO) and cut into segments by the data plane; 0: TCP goes to queueOut, segmented by the kernel.'),
    mtu: f(1380, num(576, 9000), 'Largest inner packet; TCP MSS of appliance flows is clamped to fit.'),
    sealWholeGso: f(false, bool, 'With queueTcp: a GSO packet from the LAN goes to the socket whole, which cuts it into segments and seals them on its sealing thread (one JavaScript call and one keypair check per 64 KB, as wireguard-go\'s TSO path); false (the default here): the queue cuts it and each segment is sealed on its own. Off by default on the agent: with a phone\'s tunnel shaped by QoS (HTB + fq_codel), its whole-packet sends cut the shaped goodput from 91 % to 78 % of the limit (tests/netns/qos), a cause not yet found.'),
    receiveTun: f('ntmrx%d', str, 'TUN device (virtio-net header, TSO) through which decrypted TCP is forwarded to the LAN, the segments of a flow coalesced into packets of up to 64 KB as GRO does; "%d": the kernel numbers it. IPv4 needs forwarding on and rp_filter not strict (1), IPv6 forwarding on; a family without them keeps the raw socket. Empty: a raw socket carries every packet, one by one (also the fallback where the device cannot be made).'),
    web: f<string[]>(['lan:8080'], list(str), 'Where the household web UI listens, plain HTTP: "lan:PORT" = the LAN interface\'s addresses, connections from the LAN\'s prefixes only (loopback when there is no LAN); "addr:port" / "[v6]:port" as given (e.g. an operator\'s management address; "[::]:8080" opens it to every network, the WAN included). Empty disables.'),
    webTls: f<string[]>(['lan:8443'], list(str), 'Where the web UI listens over HTTPS, same forms as web; its self-signed certificate is made at first start in dataDir (web-cert.pem, web-key.pem) and its SHA-256 fingerprint is printed at start and shown in Settings. Empty disables.'),
    webSocket: f('', str, 'Also serve the web UI on this unix socket (the demo forwards localhost to it).'),
    allowedHosts: f<string[]>([], list(str), 'Host headers the web UI accepts besides localhost and the addresses it listens on (names the household uses for it).'),
    setupCodeFile: f('', str, 'Where the one-time setup code is written on first start; empty: dataDir/setup-code.'),
    enrollTtlS: f(900, num(30, 7 * 86400), 'Lifetime of a phone enrollment token (seconds).'),
    shareTtlS: f(2 * 86400, num(60, 30 * 86400), 'Lifetime of an invitation to share a device with another household (seconds; it travels by message, so longer than a phone\'s token).'),
    lanDns: f<string[]>([], list(str), 'Where the agent answers DNS for the LAN (UDP): "lan:PORT" (the LAN interface\'s addresses) or "addr:port". It answers the names of devices other households shared with this one (DEVICE.HOUSEHOLD.ntm, A/AAAA: their virtual addresses) and refuses every other name; point the LAN\'s DHCP (option 6) or the household\'s resolver\'s .ntm zone at it. Empty disables.'),
    mdns: f(true, bool, 'Discover LAN appliances with mDNS through the system\'s Avahi daemon.'),
    qos: f(true, bool, 'Enforce the QoS rules (per device and phone, set through the API) with tc HTB + fq_codel and nftables (table inet ntm_qos); nothing is shaped until a link rate is set.'),
    wanInterface: f('', str, 'WAN interface of the vCPE (QoS shapes the uplink on it); empty: the default route\'s interface.'),
  },
  operator: {
    dcListen: f('127.0.0.1:9100', str, 'TCP address of `ntm dc`\'s operator API and /metrics (the ISP\'s side: loopback unless you set its management address; "" disables).'),
    rsListen: f('127.0.0.1:9101', str, 'TCP address of `ntm rs`\'s /metrics ("" disables).'),
    agentListen: f('127.0.0.1:9102', str, 'TCP address of `ntm agent`\'s /metrics: the ISP\'s side of the vCPE, never the household\'s LAN page ("" disables).'),
    tokenFile: f('operator-token', str, 'Bearer token of the operator API (created on first start, mode 0600); relative to the DC\'s dataDir.'),
    admission: f<'open' | 'key'>('open', oneOf(['open', 'key'] as const), 'Who may register with `ntm dc` the first time: "open" (anyone, as the paper\'s public DCs) or "key" (only a terminal presenting a valid enrollment key: `ntm keys`).'),
  },
  log: {
    level: f('info', str, 'Log level: debug, info, warn, error.'),
  },
} as const;

type Schema = typeof SCHEMA;
export type Section = keyof Schema;
export type SectionConfig<S extends Section> = {
  readonly [K in keyof Schema[S]]: Schema[S][K] extends Field<infer T> ? T : never;
};

/** Reads one section: defaults, then the file's values, then `--set section.key=value` overrides. */
export function loadSection<S extends Section>(
  section: S,
  file: Record<string, unknown> | undefined,
  overrides: Record<string, unknown> = {},
): Readonly<SectionConfig<S>> {
  const fields = SCHEMA[section] as Record<string, Field<unknown>>;
  const fromFile = (file?.[section] ?? {}) as Record<string, unknown>;
  if (typeof fromFile !== 'object' || Array.isArray(fromFile)) throw new ConfigError(section, 'must be an object');
  for (const k of Object.keys(fromFile)) {
    if (!(k in fields)) throw new ConfigError(`${section}.${k}`, 'unknown key');
  }
  const out: Record<string, unknown> = {};
  for (const [k, field] of Object.entries(fields)) {
    const key = `${section}.${k}`;
    const raw = key in overrides ? overrides[key] : k in fromFile ? fromFile[k] : undefined;
    out[k] = raw === undefined ? field.def : field.parse(raw, key);
  }
  return Object.freeze(out) as SectionConfig<S>;
}

export function readConfigFile(path: string | undefined): Record<string, unknown> | undefined {
  if (!path) return undefined;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError('--config', `cannot read ${path}: ${(e as Error).message}`);
  }
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('top level must be an object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new ConfigError('--config', `${path}: ${(e as Error).message}`);
  }
}

/** Every key with its default and meaning, for `ntm config`. */
export function describeSchema(): string {
  const lines: string[] = [];
  for (const [section, fields] of Object.entries(SCHEMA)) {
    lines.push(`[${section}]`);
    for (const [k, field] of Object.entries(fields as Record<string, Field<unknown>>)) {
      lines.push(`  ${section}.${k} = ${JSON.stringify(field.def)}`);
      lines.push(`      ${field.doc}`);
    }
  }
  return lines.join('\n');
}

export { peerRef as parsePeerRef };
