// A private D-Bus system bus and an Avahi daemon confined to one testbed host (the vCPE), for LAN discovery over mDNS
// in the demo and the tests without touching the machine's own bus or Avahi. The agent joins the bus through the
// environment (`DBUS_SYSTEM_BUS_ADDRESS`) this returns; `stop()` ends both daemons and removes their files.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface AvahiHandle {
  /** Environment for processes that use the bus (the agent: the `mdns` addon talks to Avahi over D-Bus). */
  readonly env: NodeJS.ProcessEnv;
  /** The bus's and Avahi's processes (to check that stop() ended them). */
  readonly pids: readonly number[];
  stop(): void;
}

/** Avahi's runtime directory: a mount point for each Avahi's private tmpfs; created (and removed) here if missing. */
const AVAHI_RUN = '/run/avahi-daemon';

function busConfig(socket: string): string {
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
</busconfig>
`;
}

function startUntil(cmd: string, args: string[], ready: RegExp, env: NodeJS.ProcessEnv, timeoutMs = 15_000): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} not ready after ${timeoutMs} ms: ${out.slice(-2000)}`));
    }, timeoutMs);
    const on = (d: Buffer) => {
      out += d.toString();
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout!.on('data', on);
    child.stderr!.on('data', on);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} exited (${code}) before it was ready: ${out.slice(-2000)}`));
    });
  });
}

/**
 * Starts the bus (in the root namespace: a unix socket is reachable from every namespace) and Avahi inside `netns`,
 * listening on `iface` only; Avahi's runtime directory is a tmpfs in its own mount namespace, so any other Avahi on
 * the machine is neither seen nor disturbed.
 */
export async function startAvahi(netns: string, iface: string): Promise<AvahiHandle> {
  const dir = mkdtempSync(join(tmpdir(), 'ntm-avahi-'));
  const children: ChildProcess[] = [];
  const madeRunDir = !existsSync(AVAHI_RUN);
  if (madeRunDir) mkdirSync(AVAHI_RUN);
  const stop = () => {
    for (const c of children.reverse()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    if (madeRunDir) {
      try {
        rmdirSync(AVAHI_RUN);
      } catch {
        // In use by an Avahi started since: leave it.
      }
    }
  };
  try {
    const socket = join(dir, 'system_bus_socket');
    writeFileSync(join(dir, 'bus.conf'), busConfig(socket));
    children.push(await startUntil('dbus-daemon', [`--config-file=${join(dir, 'bus.conf')}`, '--nofork', '--nopidfile', '--print-address'], /unix:path=/, process.env));
    const env = { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${socket}`, AVAHI_COMPAT_NOWARN: '1' };
    writeFileSync(
      join(dir, 'avahi.conf'),
      `[server]\nuse-ipv4=yes\nuse-ipv6=yes\nallow-interfaces=${iface}\nratelimit-interval-usec=1000000\nratelimit-burst=1000\n` +
        `[wide-area]\nenable-wide-area=no\n[publish]\ndisable-publishing=yes\npublish-hinfo=no\npublish-workstation=no\n`,
    );
    children.push(
      await startUntil(
        'ip',
        ['netns', 'exec', netns, 'unshare', '--mount', 'sh', '-c', `mount -t tmpfs tmpfs ${AVAHI_RUN} && exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f ${join(dir, 'avahi.conf')}`],
        /Server startup complete/,
        env,
      ),
    );
    return { env, pids: children.map((c) => c.pid!), stop };
  } catch (e) {
    stop();
    throw e;
  }
}
