// The `household` setting the agent benchmarks share (agent.ts): `ntm agent` on the vCPE with its appliances paired,
// one phone enrolled with a one-time token, granted, and running `ntm up` behind its Wi-Fi NAT; plus iperf3 between
// the phone and the lamp, and the agent's memory as the kernel counts it. Real processes and packets, as in
// tests/netns/agent-household.test.ts.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Testbed } from '../../scripts/netns/index.js';
import { NTM, ROOT, startNtm, waitFor, type Daemon } from '../lib/ntm.js';

export const LAMP_JS = join(ROOT, 'dist/scripts/appliances/lamp.js');
export const LAMP_LAN4 = '192.168.1.10';
/** The vCPE's public IPv4 (its WAN): the phone's way in without a tunnel, and the WireGuard endpoint. */
export const VCPE_WAN4 = '198.51.100.2';

export interface PairedDevice {
  readonly id: number;
  readonly name: string;
  readonly virtualV4: string;
  readonly virtualV6: string;
}

export interface Household {
  readonly agent: Daemon;
  readonly phone: Daemon;
  readonly phoneId: string;
  /** Paired devices in pairing order; [0] is the lamp. */
  readonly devices: readonly PairedDevice[];
}

export interface HouseholdOptions {
  /** Appliances paired in all (≥ 1): the lamp, then addresses 192.168.1.100… that need not exist on the LAN. */
  readonly paired?: number;
  /** How many of them (from the first) the phone is granted (all ports). Default 1: the lamp. */
  readonly granted?: number;
  readonly log?: (line: string) => void;
}

/**
 * Starts the agent (`--no-web`), pairs the appliances through its control socket (each pairing creates an NTM
 * identity registered with the embedded DC), enrolls the phone (`ntm enroll` with the token's link), grants it, and
 * starts `ntm up` on it. Daemons are pushed onto `started` as soon as they run, so the caller stops them on failure.
 */
export async function startHousehold(tb: Testbed, root: string, started: Daemon[], o: HouseholdOptions = {}): Promise<Household> {
  const paired = Math.max(1, o.paired ?? 1);
  const granted = Math.min(paired, o.granted ?? 1);
  const agent = await startNtm(tb, 'vcpe', 'agent', ['--no-web'], join(root, 'agent'), 30_000);
  started.push(agent);
  const devices: PairedDevice[] = [];
  for (let i = 0; i < paired; i++) {
    const req = i === 0 ? { name: 'lamp', kind: 'lamp', ip: LAMP_LAN4 } : { name: `plug${i}`, kind: 'plug', ip: `192.168.1.${99 + i}` };
    devices.push((await agent.call({ cmd: 'pair', ...req }, 20_000)) as PairedDevice);
  }
  const enr = (await agent.call({ cmd: 'enroll', name: 'Phone' })) as { link: string };
  const phoneDir = join(root, 'phone');
  const en = await tb.exec('phone', [process.execPath, NTM, 'enroll', '--data-dir', phoneDir, '--name', 'phone', enr.link]);
  if (en.code !== 0) throw new Error(`ntm enroll failed: ${en.stderr}`);
  const phoneId = (JSON.parse(en.stdout.trim()) as { id: string }).id;
  for (const d of devices.slice(0, granted)) await agent.call({ cmd: 'grant', phoneId, deviceId: d.id });
  const phone = await startNtm(tb, 'phone', 'up', ['--dns', ''], phoneDir);
  started.push(phone);
  o.log?.(`household: agent up, ${paired} paired, phone ${phoneId} enrolled and granted ${granted}`);
  return { agent, phone, phoneId, devices };
}

/** Opens the phone's tunnel to a device's virtual address (a Direction Request now), resolves when it is up. */
export async function connectPhone(h: Household, d: PairedDevice): Promise<{ path: string }> {
  const r = (await h.phone.call({ cmd: 'connect', target: d.virtualV4 }, 20_000)) as { tunnel: { path: string; state: string } };
  if (r.tunnel.state !== 'up') throw new Error(`tunnel to ${d.name}: ${r.tunnel.state}`);
  return { path: r.tunnel.path };
}

// ---------------------------------------------------------------------------------------------------------------
// Memory.

/**
 * VmRSS and VmHWM of a process, and VmRSS's two parts: anonymous memory (heaps, buffers) and file pages (mostly the
 * node binary's code, shared with every other node process in the page cache). MB = 10^6 bytes, the unit of the
 * goal; the kernel counts kB of 1,024 bytes.
 */
export function processMemoryMb(pid: number): { rss: number; peak: number; anon: number; file: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const mb = (k: string) => (Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) * 1024) / 1e6;
  return { rss: mb('VmRSS'), peak: mb('VmHWM'), anon: mb('RssAnon'), file: mb('RssFile') };
}

/**
 * CPU time (s, user + system) the kernel has charged to a process so far: its own code and the kernel work done in its
 * context (system calls, and the softirq processing a send triggers on the way through the testbed's namespaces).
 */
export function processCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
}

/** USER_HZ: the unit of /proc/<pid>/stat times (100 on Linux for every architecture Node runs on). */
const CLOCK_TICKS = 100;

export type MemorySample = ReturnType<typeof processMemoryMb>;

/** Samples a process's memory every `everyMs` until stopped; stop() returns the samples. */
export function sampleMemory(pid: number, everyMs = 200): { stop(): MemorySample[] } {
  const samples: MemorySample[] = [processMemoryMb(pid)];
  const t = setInterval(() => samples.push(processMemoryMb(pid)), everyMs);
  return {
    stop: () => {
      clearInterval(t);
      samples.push(processMemoryMb(pid));
      return samples;
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// iperf3 (Debian's 3.12), phone → LAN.

export const IPERF_PORT = 5201;

/** `iperf3 -s` in `host`, ready when it accepts connections; killed at tb.down() (and by the caller). */
export async function startIperfServer(tb: Testbed, host: string, port = IPERF_PORT): Promise<ChildProcess> {
  const srv = tb.spawn(host, ['iperf3', '-s', '-p', String(port)], { stdio: 'ignore' });
  await waitFor(`iperf3 server in ${host}`, async () => (await tb.exec(host, ['sh', '-c', `ss -Hltn 'sport = :${port}' | grep -q LISTEN`])).code === 0, 10_000, 100);
  return srv;
}

export interface IperfResult {
  /** What the receiver got (Mbit/s). */
  readonly mbps: number;
  /** UDP: datagrams lost (%) between the sender's count and the receiver's. */
  readonly lossPct?: number;
  /** UDP: what the sender put out (Mbit/s). */
  readonly sentMbps?: number;
  /** TCP: segments the sender retransmitted. */
  readonly retransmits?: number;
}

export interface IperfOptions {
  readonly seconds: number;
  readonly udp?: boolean;
  /** UDP target rate (e.g. "3G"). */
  readonly bitrate?: string;
  /** UDP payload bytes (-l). */
  readonly length?: number;
  /** TCP maximum segment size (-M). */
  readonly mss?: number;
  readonly port?: number;
  /** Source address to send from (-B): picks one of several tunnels to the same LAN by policy routing. */
  readonly bind?: string;
}

interface IperfJson {
  error?: string;
  end: {
    sum_received?: { bits_per_second: number; lost_percent?: number };
    sum_sent?: { bits_per_second: number; retransmits?: number };
  };
}

/** One iperf3 client run in `host` to `target`; the figures are iperf3's own end-of-test sums. */
export async function iperf(tb: Testbed, host: string, target: string, o: IperfOptions): Promise<IperfResult> {
  const argv = ['iperf3', '-c', target, '-p', String(o.port ?? IPERF_PORT), '-t', String(o.seconds), '-J', '--connect-timeout', '5000'];
  if (o.udp) argv.push('-u', '-b', o.bitrate ?? '1G');
  if (o.length) argv.push('-l', String(o.length));
  if (o.mss && !o.udp) argv.push('-M', String(o.mss));
  if (o.bind) argv.push('-B', o.bind);
  const r = await tb.exec(host, argv, { timeoutMs: (o.seconds + 20) * 1000 });
  let j: IperfJson;
  try {
    j = JSON.parse(r.stdout) as IperfJson;
  } catch {
    throw new Error(`iperf3 to ${target} from ${host}: exit ${r.code}: ${r.stderr || r.stdout.slice(0, 500)}`);
  }
  if (j.error) throw new Error(`iperf3 to ${target} from ${host}: ${j.error}`);
  const rx = j.end.sum_received;
  const tx = j.end.sum_sent;
  if (!rx) throw new Error(`iperf3 to ${target}: no receiver sum in ${r.stdout.slice(0, 300)}`);
  return {
    mbps: rx.bits_per_second / 1e6,
    ...(o.udp ? { lossPct: rx.lost_percent ?? NaN, sentMbps: (tx?.bits_per_second ?? NaN) / 1e6 } : { retransmits: tx?.retransmits ?? NaN }),
  };
}
