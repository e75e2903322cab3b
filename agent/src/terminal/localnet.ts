// The terminal's data plane on its own host: a detached TUN device holding the virtual addresses (the kernel routes
// peers' virtual ranges to it, with the tunnel MTU), NFQUEUE rules for this host's packets to virtual ranges and for
// the loopback carrier that hands decrypted packets back to the kernel, and the handlers between them and the
// overlay (inside/outside). Tunnel datagrams themselves arrive on the terminal's socket.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Logger } from '../util/log.js';
import { Counters } from '../util/log.js';
import type { PacketSource } from '../types/packet-source.js';
import type { RegistrationResult } from '../protocol/registration.js';
import { OverlayFirewall } from '../dataplane/nfqueue/rules.js';
import { openPacketSource } from '../dataplane/nfqueue/open.js';
import { insideHandler } from '../dataplane/inside.js';
import { carrierHandler, outsideDeliver } from '../dataplane/outside.js';
import type { TerminalHost } from './host.js';
import { Reinjector } from '../dataplane/reinject.js';

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
  readonly host: TerminalHost;
  readonly reg: RegistrationResult;
  readonly port: number;
  readonly mtu: number;
  readonly queueOut: number;
  readonly queueIn: number;
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
  const counters = new Counters();
  // A TUN device nobody reads: it only holds addresses and routes. If this daemon dies, packets to peers end there
  // (dropped) instead of leaving in plaintext by the default route: the overlay fails closed.
  await ip(['tuntap', 'add', 'dev', dev, 'mode', 'tun'], true);
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

  const reinject = await Reinjector.open();
  const firewall = new OverlayFirewall({
    chainPrefix: o.chainPrefix ?? 'NTMT',
    queueIn: o.queueIn,
    queueOut: o.queueOut,
    virtualRanges: ranges,
    captureLocal: true,
    ...(reinject.mode === 'carrier' ? { carrierPorts: { 4: reinject.port4, 6: reinject.port6 } } : {}),
  });
  const sources: PacketSource[] = [];
  try {
    const out = openPacketSource({ queue: o.queueOut });
    sources.push(out);
    out.onPacket(insideHandler({ overlay: o.host, mtu: o.mtu, counters }));
    if (reinject.mode === 'carrier') {
      const inn = openPacketSource({ queue: o.queueIn });
      sources.push(inn);
      inn.onPacket(carrierHandler({ reinject, counters }));
    }
    o.host.setInnerHandler(outsideDeliver({ reinject, counters }));
    await firewall.install();
  } catch (e) {
    await Promise.all(sources.map((s) => s.close()));
    await firewall.remove().catch(() => undefined);
    reinject.close();
    throw e;
  }
  o.log.info('data plane up', { device: dev, v4: o.reg.v4, v6: o.reg.v6, mtu: o.mtu });
  return {
    status: () => ({
      device: dev,
      counters: counters.toJSON(),
      reinjected: reinject.counters.toJSON(),
      queues: sources.map((s) => ({ queue: s.queue, ...s.counters })),
    }),
    stop: async () => {
      await firewall.remove().catch((e: Error) => o.log.error('removing firewall rules failed', { err: e }));
      await Promise.all(sources.map((s) => s.close()));
      reinject.close();
      await ip(['link', 'del', dev]).catch(() => undefined);
    },
  };
}
