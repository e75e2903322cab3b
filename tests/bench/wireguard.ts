// The two paths the throughput benchmark compares the agent with, on the same `household` testbed:
// - wireguard-go (Debian's userspace WireGuard, what a user would pick instead): one interface in the vCPE, one on the
//   phone, the phone routing the home LAN through it, as a "WireGuard to my router" setup does;
// - no tunnel at all: a port forward (DNAT) on the vCPE's WAN to the lamp, as a home router does.
// Both live in the testbed's namespaces: tb.down() kills wireguard-go and deletes its interfaces, tables and rules.
import { rmSync, writeFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { Testbed } from '../../scripts/netns/index.js';
import { waitFor } from '../lib/ntm.js';
import { LAMP_LAN4, VCPE_WAN4 } from './household.js';

export const WG_PORT = 51820;
const WG_NET = '10.99.0';
/** wireguard-go's control sockets (UAPI), named after the interface: one directory for every namespace. */
const UAPI_DIR = '/var/run/wireguard';

/**
 * The interface name in `host`. wireguard-go's UAPI socket is /var/run/wireguard/<name>.sock whatever the namespace,
 * so the name must be unique on the machine: the testbed's prefix (8 characters from the API) and a letter per host.
 */
function ifName(tb: Testbed, host: 'vcpe' | 'phone'): string {
  return `w${tb.prefix.slice(0, 12)}${host === 'vcpe' ? 'v' : 'p'}`;
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

async function startDaemon(tb: Testbed, host: 'vcpe' | 'phone'): Promise<ChildProcess> {
  const dev = ifName(tb, host);
  // Foreground, so the process is the testbed's child (killed at down) rather than a daemon of its own.
  const p = tb.spawn(host, ['wireguard-go', dev], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, WG_PROCESS_FOREGROUND: '1' } });
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
  /** The two wireguard-go processes (vCPE, phone). */
  readonly pids: readonly number[];
  /** Stops both wireguard-go processes (SIGTERM: they remove their UAPI sockets) and waits for them. */
  stop(): Promise<void>;
}

/**
 * wireguard-go between the phone and the vCPE, inner MTU `mtu` (wireguard-go's default is 1420; the benchmark gives
 * it our tunnel's 1380 so both carry the same inner packets). Resolves with the address the phone reaches the lamp
 * at through it (its LAN address) once a ping has crossed.
 */
export async function startWireguard(tb: Testbed, dir: string, mtu: number): Promise<WireguardPath> {
  const v = await keypair(tb, dir, 'wg-vcpe');
  const p = await keypair(tb, dir, 'wg-phone');
  const vIf = ifName(tb, 'vcpe');
  const pIf = ifName(tb, 'phone');
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
    procs.push(...(await Promise.all([startDaemon(tb, 'vcpe'), startDaemon(tb, 'phone')])));
    await configure(tb, { vIf, pIf, v, p, mtu });
  } catch (e) {
    await stop();
    throw e;
  }
  return { lampAddress: LAMP_LAN4, pids: procs.map((c) => c.pid!), stop };
}

async function configure(tb: Testbed, c: { vIf: string; pIf: string; v: { file: string; pub: string }; p: { file: string; pub: string }; mtu: number }): Promise<void> {
  const { vIf, pIf, v, p, mtu } = c;
  await ok(tb, 'vcpe', ['wg', 'set', vIf, 'listen-port', String(WG_PORT), 'private-key', v.file, 'peer', p.pub, 'allowed-ips', `${WG_NET}.2/32`]);
  await ok(tb, 'vcpe', ['ip', 'addr', 'add', `${WG_NET}.1/24`, 'dev', vIf]);
  await ok(tb, 'vcpe', ['ip', 'link', 'set', vIf, 'mtu', String(mtu), 'up']);
  // The vCPE forwards what comes out of the tunnel to the LAN like anything from inside (its WAN filter is for wan0).
  await ok(tb, 'vcpe', ['nft', 'insert', 'rule', 'inet', 'ntm_filter', 'forward', 'iifname', vIf, 'accept']);
  await ok(tb, 'phone', [
    'wg', 'set', pIf, 'private-key', p.file,
    'peer', v.pub, 'endpoint', `${VCPE_WAN4}:${WG_PORT}`, 'allowed-ips', `${WG_NET}.1/32,192.168.1.0/24`, 'persistent-keepalive', '25',
  ]);
  await ok(tb, 'phone', ['ip', 'addr', 'add', `${WG_NET}.2/24`, 'dev', pIf]);
  await ok(tb, 'phone', ['ip', 'link', 'set', pIf, 'mtu', String(mtu), 'up']);
  await ok(tb, 'phone', ['ip', 'route', 'add', '192.168.1.0/24', 'dev', pIf]);
  await waitFor('a ping through wireguard-go', async () => (await tb.exec('phone', ['ping', '-c', '1', '-W', '1', LAMP_LAN4])).code === 0, 15_000, 200);
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
