// The terminal's data plane on its own host: a detached TUN device holding the virtual addresses (the kernel routes
// peers' virtual ranges to it, with the tunnel MTU), then the data-path engine's queues and rules (dataplane/engine.ts)
// capturing this host's packets to virtual ranges. Tunnel datagrams themselves arrive on the terminal's socket, which
// the engine reads from the start.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Logger } from '../util/log.js';
import type { RegistrationResult } from '../protocol/registration.js';
import type { DataEngine } from '../dataplane/engine.js';

const run = promisify(execFile);

async function ip(args: string[], okIfExists = false): Promise<void> {
  try {
    await run('ip', args, { timeout: 10_000 });
  } catch (e) {
    const msg = (e as { stderr?: string }).stderr ?? String(e);
    if (okIfExists && /File exists|already/i.test(msg)) return;
    throw new Error(`ip ${args.join(' ')}: ${msg.trim()}`);
  }
}

export interface TerminalDataplaneOptions {
  readonly engine: DataEngine;
  readonly reg: RegistrationResult;
  readonly mtu: number;
  readonly queueOut: number;
  readonly queueIn: number;
  /** Outgoing TCP, unsegmented (GSO); 0 or absent: TCP shares queueOut. */
  readonly queueTcp?: number;
  /** GSO packets of queueTcp sealed whole by the socket (engine.ts EngineIo.sealWholeGso); default true. */
  readonly sealWholeGso?: boolean;
  /** Decrypted TCP through this TUN (engine.ts EngineIo.receiveTun); '' or absent: the raw socket. */
  readonly receiveTun?: string;
  readonly device?: string;
  readonly virtualRanges?: readonly string[];
  readonly chainPrefix?: string;
  readonly log: Logger;
}

export interface TerminalDataplane {
  status(): Record<string, unknown>;
  stop(): Promise<void>;
}

export async function startTerminalDataplane(o: TerminalDataplaneOptions): Promise<TerminalDataplane> {
  const dev = o.device ?? 'ntm0';
  const ranges = o.virtualRanges ?? ['198.18.0.0/15', 'fd4e:544d::/32'];
  // A TUN device nobody reads: it only holds addresses and routes. If this daemon dies, packets to peers end there
  // (dropped) instead of leaving in plaintext by the default route: the overlay fails closed.
  await ip(['tuntap', 'add', 'dev', dev, 'mode', 'tun'], true).catch(async (e: Error) => {
    // The device is persistent: one left by a predecessor killed before it could remove it (kill -9) makes `tuntap
    // add` fail with EBUSY, and the terminal could never start again in this namespace. It holds only our addresses.
    if (!/busy/i.test(e.message)) throw e;
    o.log.warn('replacing a device left by an earlier run', { device: dev });
    await ip(['link', 'del', dev]);
    await ip(['tuntap', 'add', 'dev', dev, 'mode', 'tun']);
  });
  await ip(['link', 'set', dev, 'up', 'mtu', String(o.mtu)]);
  await ip(['addr', 'replace', `${o.reg.v4}/32`, 'dev', dev]);
  // An IPv4-only host (IPv6 disabled) keeps its virtual IPv4 only; its peers still reach it over IPv4 inside.
  const hasV6 = await ip(['-6', 'addr', 'replace', `${o.reg.v6}/128`, 'dev', dev, 'nodad']).then(
    () => true,
    (e: Error) => (o.log.info('no virtual IPv6 on this host', { why: e.message }), false),
  );
  for (const r of ranges) {
    const v6 = r.includes(':');
    if (v6 && !hasV6) continue;
    await ip([...(v6 ? ['-6'] : []), 'route', 'replace', r, 'dev', dev, 'src', v6 ? o.reg.v6 : o.reg.v4, 'mtu', String(o.mtu)]).catch((e: Error) =>
      o.log.warn('route not installed', { range: r, err: e }),
    );
  }

  await o.engine.start({
    queueIn: o.queueIn,
    queueOut: o.queueOut,
    ...(o.queueTcp ? { queueTcp: o.queueTcp } : {}),
    ...(o.sealWholeGso !== undefined ? { sealWholeGso: o.sealWholeGso } : {}),
    ...(o.receiveTun ? { receiveTun: o.receiveTun } : {}),
    rules: { chainPrefix: o.chainPrefix ?? 'NTMT', virtualRanges: ranges, captureLocal: true },
  });
  o.log.info('data plane up', { device: dev, v4: o.reg.v4, v6: o.reg.v6, mtu: o.mtu });
  return {
    status: () => ({ device: dev, ...o.engine.status() }),
    stop: async () => {
      await o.engine.stop();
      await ip(['link', 'del', dev]).catch(() => undefined);
    },
  };
}
