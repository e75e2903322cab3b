// The paths the throughput benchmark compares the agent with, on the same `household` testbed:
// - wireguard-go (userspace WireGuard, what a user would pick instead): one interface in the vCPE, one on the phone,
//   the phone routing the home LAN through it, as a "WireGuard to my router" setup does. Two builds side by side:
//   the current upstream release built from source by `scripts/setup --bench` (build/bench/wireguard-go: TUN TSO/GRO,
//   UDP GSO/GRO, batched I/O) and Debian 12's 2022 package. Each has its own subnet; the phone picks the tunnel by the
//   source address iperf3 binds (a policy-routing rule per tunnel), since both carry the same LAN;
// - no tunnel at all: a port forward (DNAT) on the vCPE's WAN to the lamp, as a home router does.
// All live in the testbed's namespaces: tb.down() kills wireguard-go and deletes its interfaces, tables and rules.
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { Testbed } from '../../scripts/netns/index.js';
import { ROOT, waitFor } from '../lib/ntm.js';
import { LAMP_LAN4, VCPE_WAN4 } from './household.js';

/** wireguard-go's control sockets (UAPI), named after the interface: one directory for every namespace. */
const UAPI_DIR = '/var/run/wireguard';
/** Where `scripts/setup --bench` builds the current upstream wireguard-go (the anchor, vendored for an offline build). */
export const WG_BUILT = join(ROOT, 'build/bench/wireguard-go');
/** Debian's package. */
export const WG_DEBIAN = '/usr/bin/wireguard-go';

/** One wireguard-go tunnel of the benchmark: which binary, and the slot that keeps its names and addresses apart. */
export interface WireguardSpec {
  readonly binary: string;
  /** 0, 1, …: interface letter, listen port, tunnel subnet and routing table of this instance. */
  readonly slot: number;
}

/** `binary --version`'s first line ("wireguard-go v0.0.20250522"), or null when it does not run. */
export function wireguardVersion(binary: string): string | null {
  if (!existsSync(binary)) return null;
  try {
    return execFileSync(binary, ['--version'], { encoding: 'utf8', timeout: 5000 }).split('\n')[0]!.trim();
  } catch {
    return null;
  }
}

const port = (slot: number): number => 51820 + slot;
const net = (slot: number): string => `10.${99 - slot}.0`;

/**
 * The interface name in `host`. wireguard-go's UAPI socket is /var/run/wireguard/<name>.sock whatever the namespace,
 * so the name must be unique on the machine: the testbed's prefix (8 characters from the API), the slot and a letter
 * per host (15 characters at most).
 */
function ifName(tb: Testbed, host: 'vcpe' | 'phone', slot: number): string {
  return `w${tb.prefix.slice(0, 12)}${slot}${host === 'vcpe' ? 'v' : 'p'}`;
}

async function ok(tb: Testbed, host: string, argv: string[], input?: string): Promise<string> {
  const r = await tb.exec(host, argv, input === undefined ? {} : { input });
  if (r.code !== 0) throw new Error(`${host}: ${argv.join(' ')}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout.trim();
}

async function keypair(tb: Testbed, dir: string, name: string): Promise<{ file: string; pub: string }> {
  const priv = await ok(tb, 'vcpe', ['wg', 'genkey']);
  const file = join(dir, `${name}.key`);
  writeFileSync(file, `${priv}\n`, { mode: 0o600 });
  return { file, pub: await ok(tb, 'vcpe', ['wg', 'pubkey'], `${priv}\n`) };
}

async function startDaemon(tb: Testbed, host: 'vcpe' | 'phone', spec: WireguardSpec): Promise<ChildProcess> {
  const dev = ifName(tb, host, spec.slot);
  // Foreground, so the process is the testbed's child (killed at down) rather than a daemon of its own.
  const p = tb.spawn(host, [spec.binary, dev], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, WG_PROCESS_FOREGROUND: '1' } });
  let err = '';
  p.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  await waitFor(`wireguard-go's ${dev} in ${host}`, async () => p.exitCode === null && (await tb.exec(host, ['ip', 'link', 'show', dev])).code === 0, 10_000, 50).catch((e: Error) => {
    throw new Error(`${e.message} ${err}`);
  });
  return p;
}

export interface WireguardPath {
  /** The address the phone reaches the lamp at through the tunnel (its LAN address). */
  readonly lampAddress: string;
  /** The phone's tunnel address: bind to it (iperf3 -B) to take this tunnel. */
  readonly phoneAddress: string;
  /** The two wireguard-go processes (vCPE, phone). */
  readonly pids: readonly number[];
  /** Stops both wireguard-go processes (SIGTERM: they remove their UAPI sockets) and waits for them. */
  stop(): Promise<void>;
}

/**
 * wireguard-go between the phone and the vCPE, inner MTU `mtu` (wireguard-go's default is 1420; the benchmark gives
 * it our tunnel's 1380 so both carry the same inner packets). Resolves with the address the phone reaches the lamp
 * at through it (its LAN address) once a ping from the tunnel's own address has crossed.
 */
export async function startWireguard(tb: Testbed, dir: string, mtu: number, spec: WireguardSpec): Promise<WireguardPath> {
  const v = await keypair(tb, dir, `wg${spec.slot}-vcpe`);
  const p = await keypair(tb, dir, `wg${spec.slot}-phone`);
  const vIf = ifName(tb, 'vcpe', spec.slot);
  const pIf = ifName(tb, 'phone', spec.slot);
  const procs: ChildProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(
      procs.map(
        (c) =>
          new Promise<void>((r) => {
            if (c.exitCode !== null || c.signalCode !== null) return r();
            c.once('exit', () => r());
            c.kill('SIGTERM');
            setTimeout(() => (c.kill('SIGKILL'), r()), 3000).unref();
          }),
      ),
    );
    for (const dev of [vIf, pIf]) rmSync(join(UAPI_DIR, `${dev}.sock`), { force: true });
  };
  try {
    procs.push(...(await Promise.all([startDaemon(tb, 'vcpe', spec), startDaemon(tb, 'phone', spec)])));
    await configure(tb, { vIf, pIf, v, p, mtu, slot: spec.slot });
  } catch (e) {
    await stop();
    throw e;
  }
  return { lampAddress: LAMP_LAN4, phoneAddress: `${net(spec.slot)}.2`, pids: procs.map((c) => c.pid!), stop };
}

async function configure(tb: Testbed, c: { vIf: string; pIf: string; v: { file: string; pub: string }; p: { file: string; pub: string }; mtu: number; slot: number }): Promise<void> {
  const { vIf, pIf, v, p, mtu, slot } = c;
  const WG_NET = net(slot);
  await ok(tb, 'vcpe', ['wg', 'set', vIf, 'listen-port', String(port(slot)), 'private-key', v.file, 'peer', p.pub, 'allowed-ips', `${WG_NET}.2/32`]);
  await ok(tb, 'vcpe', ['ip', 'addr', 'add', `${WG_NET}.1/24`, 'dev', vIf]);
  await ok(tb, 'vcpe', ['ip', 'link', 'set', vIf, 'mtu', String(mtu), 'up']);
  // The vCPE forwards what comes out of the tunnel to the LAN like anything from inside (its WAN filter is for wan0).
  await ok(tb, 'vcpe', ['nft', 'insert', 'rule', 'inet', 'ntm_filter', 'forward', 'iifname', vIf, 'accept']);
  await ok(tb, 'phone', [
    'wg', 'set', pIf, 'private-key', p.file,
    'peer', v.pub, 'endpoint', `${VCPE_WAN4}:${port(slot)}`, 'allowed-ips', `${WG_NET}.1/32,192.168.1.0/24`, 'persistent-keepalive', '25',
  ]);
  await ok(tb, 'phone', ['ip', 'addr', 'add', `${WG_NET}.2/24`, 'dev', pIf]);
  await ok(tb, 'phone', ['ip', 'link', 'set', pIf, 'mtu', String(mtu), 'up']);
  // The home LAN through this tunnel for what is sent from this tunnel's address (the other tunnel has its own table).
  const table = String(200 + slot);
  await ok(tb, 'phone', ['ip', 'route', 'add', '192.168.1.0/24', 'dev', pIf, 'table', table]);
  await ok(tb, 'phone', ['ip', 'rule', 'add', 'from', `${WG_NET}.2`, 'lookup', table]);
  await waitFor('a ping through wireguard-go', async () => (await tb.exec('phone', ['ping', '-c', '1', '-W', '1', '-I', `${WG_NET}.2`, LAMP_LAN4])).code === 0, 15_000, 200);
}

/**
 * A port forward on the vCPE's WAN (DNAT `port` to the lamp, TCP and UDP) and the forward-chain exception a home
 * router adds with it. Resolves with the address the phone uses: the vCPE's public one.
 */
export async function startPortForward(tb: Testbed, port: number): Promise<{ lampAddress: string }> {
  const table = [
    'table ip ntm_bench_dnat {',
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    `    iifname "wan0" meta l4proto { tcp, udp } th dport ${port} dnat to ${LAMP_LAN4}`,
    '  }',
    '}',
    '',
  ].join('\n');
  await ok(tb, 'vcpe', ['nft', '-f', '-'], table);
  await ok(tb, 'vcpe', ['nft', 'insert', 'rule', 'inet', 'ntm_filter', 'forward', 'iifname', 'wan0', 'ct', 'status', 'dnat', 'accept']);
  return { lampAddress: VCPE_WAN4 };
}
