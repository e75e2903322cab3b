// The household LAN card of a vCPE agent VM, named in its NoCloud seed (cloud-init's `network-config`, version 2 —
// https://cloudinit.readthedocs.io/en/latest/reference/network-config-format-v2.html). An ISP's orchestrator attaches
// two cards to each household's VM (the paper's §5 vCPE): the WAN, which takes its address by DHCP and carries the
// default route, and the subscriber's LAN. `ntm provision` writes the seed's network-config naming the LAN card by its
// MAC address (the ethernet entry whose id is "lan"), and the image's first boot (firmware/first-boot) runs this file
// as a program: it turns the network-config into systemd-networkd files and tells the agent which interface is its
// LAN (agent.lanInterface), where its web page listens and whose prefixes it answers.
//
// network-config is written as JSON, which YAML readers (cloud-init, netplan) read as YAML; the first boot reads the
// seed's file with JSON.parse and ignores (with a message) one it cannot read, leaving every card on DHCP.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isIP } from 'node:net';

/** The network-config id of the household LAN card; the image's first boot makes it the agent's LAN interface. */
export const LAN_ID = 'lan';

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** A card's MAC address in the lower-case colon form, or undefined when it is not one (a unicast MAC of 6 octets). */
export function normalMac(text: string): string | undefined {
  const mac = text.trim().toLowerCase().replace(/-/g, ':');
  return MAC.test(mac) && (parseInt(mac.slice(0, 2), 16) & 1) === 0 ? mac : undefined;
}

/** An interface address with its prefix ("192.168.1.1/24", "fd00::1/64"), or undefined. */
export function normalCidr(text: string): string | undefined {
  const m = /^([0-9a-fA-F:.]+)\/(\d{1,3})$/.exec(text.trim());
  if (!m) return undefined;
  const family = isIP(m[1]!);
  const bits = Number(m[2]);
  return family !== 0 && bits <= (family === 4 ? 32 : 128) ? `${m[1]}/${bits}` : undefined;
}

/**
 * The seed's network-config for a household LAN card: the card with MAC `mac`, with the fixed address `address`
 * (CIDR), or by DHCP without taking a route or DNS servers from the LAN (the default route is the WAN's).
 */
export function lanNetworkConfig(mac: string, address?: string): string {
  const lan = address
    ? { match: { macaddress: mac }, addresses: [address], dhcp4: false }
    : { match: { macaddress: mac }, dhcp4: true, 'dhcp4-overrides': { 'use-routes': false, 'use-dns': false } };
  return JSON.stringify({ version: 2, ethernets: { [LAN_ID]: lan } }, null, 2) + '\n';
}

interface Ethernet {
  match?: { macaddress?: unknown };
  addresses?: unknown;
  dhcp4?: unknown;
  'dhcp4-overrides'?: { 'use-routes'?: unknown; 'use-dns'?: unknown };
  gateway4?: unknown;
}

export interface NetworkdPlan {
  /** systemd-networkd files to write: name → contents. */
  readonly files: Map<string, string>;
  /** The kernel's name of the LAN card, when the config names one and the VM has it. */
  readonly lanInterface: string | undefined;
  /** What was done or skipped, for the console. */
  readonly notes: string[];
}

/**
 * systemd-networkd files for the network-config's ethernets that match a MAC address (cards found in `cards`, MAC →
 * kernel name). Each gets `10-ntm-<id>.network`, which sorts before the image's catch-all DHCP file.
 */
export function networkdPlan(networkConfig: string, cards: ReadonlyMap<string, string>): NetworkdPlan {
  const files = new Map<string, string>();
  const notes: string[] = [];
  let lanInterface: string | undefined;
  let doc: { version?: unknown; ethernets?: Record<string, Ethernet> };
  try {
    doc = JSON.parse(networkConfig) as typeof doc;
  } catch {
    return { files, lanInterface, notes: ['network-config is not the JSON form ntm provision writes: ignored (every card takes DHCP)'] };
  }
  if (doc.version !== 2 || typeof doc.ethernets !== 'object' || doc.ethernets === null)
    return { files, lanInterface, notes: ['network-config is not version 2 with ethernets: ignored (every card takes DHCP)'] };
  for (const [id, e] of Object.entries(doc.ethernets)) {
    const mac = typeof e?.match?.macaddress === 'string' ? normalMac(e.match.macaddress) : undefined;
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(id) || !mac) {
      notes.push(`network-config: ethernet "${id}" has no usable match.macaddress: ignored`);
      continue;
    }
    const name = cards.get(mac);
    if (!name) {
      notes.push(`network-config: no card with MAC ${mac} (for "${id}")`);
      continue;
    }
    const addrs = (Array.isArray(e.addresses) ? e.addresses : []).map((a) => (typeof a === 'string' ? normalCidr(a) : undefined));
    if (addrs.some((a) => a === undefined)) {
      notes.push(`network-config: "${id}" has an address that is not ADDRESS/PREFIX: ignored`);
      continue;
    }
    const gw = typeof e.gateway4 === 'string' && isIP(e.gateway4) === 4 ? e.gateway4 : undefined;
    const ov = e['dhcp4-overrides'] ?? {};
    const lines = [
      `# ${id} from the NoCloud seed's network-config (written by firmware/first-boot)`,
      '[Match]',
      `MACAddress=${mac}`,
      '',
      '[Network]',
      ...addrs.map((a) => `Address=${a}`),
      ...(gw ? [`Gateway=${gw}`] : []),
      `DHCP=${e.dhcp4 === true ? 'ipv4' : 'no'}`,
      // The household LAN is not where this VM learns its own routes from.
      `IPv6AcceptRA=${id === LAN_ID ? 'no' : 'yes'}`,
      ...(e.dhcp4 === true ? ['', '[DHCPv4]', `UseRoutes=${ov['use-routes'] === false ? 'no' : 'yes'}`, `UseDNS=${ov['use-dns'] === false ? 'no' : 'yes'}`] : []),
    ];
    files.set(`10-ntm-${id}.network`, lines.join('\n') + '\n');
    notes.push(`${id === LAN_ID ? 'household LAN' : id}: ${name} (${mac}) ${addrs.length ? addrs.join(' ') : e.dhcp4 === true ? 'DHCP' : 'no address'}`);
    if (id === LAN_ID) lanInterface = name;
  }
  return { files, lanInterface, notes };
}

/** The VM's network cards: MAC → kernel name, from sysfs. */
export function cardsFromSysfs(sysNet: string): Map<string, string> {
  const cards = new Map<string, string>();
  for (const name of readdirSync(sysNet)) {
    if (name === 'lo') continue;
    try {
      const mac = normalMac(readFileSync(join(sysNet, name, 'address'), 'utf8'));
      if (mac && !cards.has(mac)) cards.set(mac, name);
    } catch {
      // not a card with an address
    }
  }
  return cards;
}

/**
 * First boot: `node seed-network.js NETWORK-CONFIG AGENT-JSON NETWORKD-DIR [SYS-NET]` writes the networkd files and,
 * when the agent's config names no LAN interface, sets agent.lanInterface to the LAN card's kernel name.
 */
function main(argv: string[]): void {
  const [configFile, agentJson, networkdDir, sysNet = '/sys/class/net'] = argv;
  if (!configFile || !agentJson || !networkdDir) {
    process.stderr.write('usage: seed-network.js NETWORK-CONFIG AGENT-JSON NETWORKD-DIR [SYS-NET]\n');
    process.exit(64);
  }
  const plan = networkdPlan(readFileSync(configFile, 'utf8'), cardsFromSysfs(sysNet));
  for (const [name, text] of plan.files) writeFileSync(join(networkdDir, name), text, { mode: 0o644 });
  for (const n of plan.notes) process.stdout.write(`ntm first boot: ${n}\n`);
  if (!plan.lanInterface) return;
  const cfg = JSON.parse(readFileSync(agentJson, 'utf8')) as { agent?: Record<string, unknown> };
  const agent = (cfg.agent ??= {});
  if (typeof agent.lanInterface === 'string' && agent.lanInterface !== '') return;
  agent.lanInterface = plan.lanInterface;
  writeFileSync(agentJson, JSON.stringify(cfg, null, 2) + '\n', { mode: 0o600 });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main(process.argv.slice(2));
