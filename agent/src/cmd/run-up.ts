// `ntm up`: the terminal daemon a phone or laptop runs (paper §2.1 "NTM terminal"): registers with its DC, keeps the
// registration, builds tunnels on demand, carries the virtual address's IP packets (NFQUEUE), answers *.ntm names,
// and moves its tunnels by itself when its real address changes.
import { join } from 'node:path';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { loadSection, readConfigFile } from '../config/schema.js';
import { createLogger } from '../util/log.js';
import { UdpBind } from '../dataplane/conn/udp.js';
import { TerminalHost } from '../terminal/host.js';
import { NetWatch, pathChanged } from '../terminal/netwatch.js';
import { NtmDns } from '../terminal/dns.js';
import { registerNtmDomain, resolvedRuns, systemUpstream, parseDnsServer } from '../terminal/resolver-config.js';
import { HandshakeClock, HANDSHAKE_CLOCK_FILE } from '../terminal/handshake-clock.js';
import { formatEndpoint, parseEndpoint } from '../protocol/endpoint.js';
import { tryParseId } from '../crypto/secp256k1.js';
import { ipFamily } from '../protocol/ip.js';
import type { Target } from '../protocol/control.js';
import type { Endpoint } from '../types/net.js';
import { InputError, RegistrationRefusedError } from '../types/errors.js';
import { parseArgs, one, has, overrides } from './args.js';
import { announce, loadOrCreateIdentity, onShutdown, parseDcRef, resolveIn, securedDataDir, tunnelLimits } from './common.js';
import { ControlServer } from './control-socket.js';
import { startTerminalDataplane } from '../terminal/localnet.js';
import { DataEngine } from '../dataplane/engine.js';
import { PASS_THROUGH } from '../dataplane/policy.js';
import { ENROLLMENT_FILE } from './run-enroll.js';
import { EXIT_HELP } from './exit.js';

export const UP_HELP = `ntm up — run an NTM terminal (a phone, a laptop)

  ntm up --dc <DC public key>@ADDR:PORT [--name NAME] [--data-dir DIR] [--listen [::]:0] \\
         [--no-dataplane] [--dns 127.0.0.1:53 | --dns ""]

Registers with its DC (virtual IPv4 and IPv6 addresses), keeps the registration alive through
NATs, and carries IP packets between its virtual address and peers' virtual addresses over
end-to-end encrypted tunnels (NFQUEUE + iptables-nft, a "ntm0" device holding the addresses).
Peers are reached by virtual address, or by name: NAME.ntm resolves through the DNS listener,
which forwards every other name to the resolver of /etc/resolv.conf (terminal.dnsUpstream sets
another); where systemd-resolved runs, it only gets a "~ntm" routing domain on the device.
When the host's real address changes it re-registers and moves its tunnels by itself; TCP
connections between virtual addresses survive. Prints one JSON line when registered.

  --no-dataplane    signalling only (no iptables rules, no device)
  --token TOKEN     a one-time enrollment token from the household's web page (ntm enroll does this)
  --mtu BYTES       MTU of the virtual interface (default 1380)
  --config FILE     JSON config ({"terminal": {...}}); --set terminal.KEY=VALUE overrides any key
  ntm status --data-dir DIR           this daemon's registration and tunnels (--json for machines)
  ntm connect --data-dir DIR TARGET   open a tunnel now (TARGET: NAME.ntm, 0xID or virtual address)

Alone, as root on a phone or laptop, with a DC whose \`ntm dc --print-id\` gave publicKey DCKEY:
  ntm up --data-dir /var/lib/ntm/terminal --dc DCKEY@192.0.2.2:7100 --name phone
  ntm connect --data-dir /var/lib/ntm/terminal laptop        # prints the tunnel and the peer's virtual address

${EXIT_HELP}`;

/** "lamp.ntm", "0x…", "198.18.1.5", "fd4e:…" → the wire Target. */
export function parseTarget(text: string): Target {
  const id = tryParseId(text);
  if (id) return { kind: 'id', id };
  const f = ipFamily(text);
  if (f === 4) return { kind: 'v4', address: text };
  if (f === 6) return { kind: 'v6', address: text };
  if (/^[a-z0-9][a-z0-9.-]{0,62}$/i.test(text)) return { kind: 'name', name: text.replace(/\.ntm\.?$/i, '') };
  throw new InputError(`not a peer: ${text} (a NAME.ntm, a 0x ID or a virtual address)`);
}

export async function runUp(argv: readonly string[]): Promise<void> {
  const p = parseArgs(argv, ['help', 'no-dataplane']);
  if (has(p, 'help')) return void process.stdout.write(UP_HELP);
  const file = readConfigFile(one(p, 'config'));
  const ov = overrides(p, { dc: 'terminal.dc', name: 'terminal.name', 'data-dir': 'terminal.dataDir', listen: 'terminal.listen', dns: 'terminal.dns', mtu: 'terminal.mtu' }, [
    'no-dataplane',
    'token',
  ]);
  if (has(p, 'no-dataplane')) ov['terminal.dataplane'] = 'false';
  const cfg = loadSection('terminal', file, ov);
  const log = createLogger(loadSection('log', file).level);
  securedDataDir(cfg.dataDir, log);
  let dcText = cfg.dc;
  const enrolled = join(cfg.dataDir, ENROLLMENT_FILE);
  if (!dcText && existsSync(enrolled)) dcText = (JSON.parse(readFileSync(enrolled, 'utf8')) as { dc: string }).dc;
  if (!dcText) throw new InputError('--dc is required (the DC as <public key>@addr:port), or join a household first with `ntm enroll TOKEN`');
  const dc = parseDcRef(dcText);
  const identity = await loadOrCreateIdentity(resolveIn(cfg.dataDir, cfg.key));
  const ntPath = join(cfg.dataDir, 'node-transaction.bin');
  const handshakeClock = new HandshakeClock(join(cfg.dataDir, HANDSHAKE_CLOCK_FILE), log);
  const bind = await UdpBind.open({ listen: cfg.listen, openData: true });
  const watch = new NetWatch(
    () => [dc.endpoint],
    (now, before, at) => host.moved({ pathChanged: pathChanged(now, before), at }),
    cfg.moveCheckMs,
  );
  const snap = await watch.start();
  const locals = (): Endpoint[] => watch.snapshot.addresses.map((a) => ({ family: a.family, address: a.address, port: bind.port }));
  const host: TerminalHost = new TerminalHost({
    bind,
    locals,
    log,
    punchTimeoutMs: cfg.punchTimeoutMs,
    limits: tunnelLimits(cfg.rekeyAfterMs, cfg.rejectAfterMs),
    handshakeTime: () => handshakeClock.next(),
    retry: { initialMs: 500, maxMs: 4000, deadlineMs: cfg.requestDeadlineMs },
  });
  // A terminal's packets are its own: the engine passes them through, sealed and opened.
  const engine = new DataEngine({ bind, tunnels: host, policy: PASS_THROUGH, mtu: cfg.mtu, log });
  const token = one(p, 'token');
  const node = host.addNode(
    identity,
    { id: dc.id, publicKey: dc.publicKey, endpoint: dc.endpoint },
    { name: cfg.name, ...(token ? { token: Buffer.from(token, 'utf8') } : {}), ...(existsSync(ntPath) ? { nt: readFileSync(ntPath) } : {}) },
  );
  log.info('terminal starting', { id: identity.idHex, dc: dc.idHex, locals: snap.addresses.map((a) => a.address) });
  // A DC that does not answer may be down for a while: keep trying. One that refuses (authenticated, §3.2) has said
  // why: stop with that (exit 75 when trying later may work, a full pool or a rate limit; 77 otherwise).
  const firstRegistration = async () => {
    try {
      return await node.register();
    } catch (e) {
      if (e instanceof RegistrationRefusedError) {
        watch.stop();
        await host.close();
        throw e;
      }
      log.warn('registration failed; retrying', { err: e });
      return undefined;
    }
  };
  let reg = await firstRegistration();
  while (!reg) {
    await new Promise((r) => setTimeout(r, 2000));
    reg = await firstRegistration();
  }
  writeFileSync(ntPath, node.nodeTransaction, { mode: 0o600 });

  const dataplane = cfg.dataplane ? await startTerminalDataplane({ engine, reg, device: cfg.device, mtu: cfg.mtu, queueOut: cfg.queueOut, queueIn: cfg.queueIn, queueTcp: cfg.queueTcp, sealWholeGso: cfg.sealWholeGso, receiveTun: cfg.receiveTun, log }) : undefined;

  let dns: NtmDns | undefined;
  let unrouteNtm: (() => Promise<void>) | undefined;
  if (cfg.dns) {
    const listen = parseEndpoint(cfg.dns);
    // systemd-resolved stays the system's resolver and asks us for .ntm only; otherwise the host's resolver (or a phone)
    // points at us and every other name must reach the resolver we replaced.
    if (dataplane && (await resolvedRuns())) unrouteNtm = await registerNtmDomain(cfg.device, listen, log);
    const upstream = cfg.dnsUpstream === 'none' ? undefined : cfg.dnsUpstream ? parseDnsServer(cfg.dnsUpstream) : systemUpstream(listen);
    log.info('dns listening', { listen: cfg.dns, upstream: upstream ? formatEndpoint(upstream) : null });
    dns = await NtmDns.start({
      listen,
      ...(upstream ? { upstream } : {}),
      resolve: async (name) => {
        const r = await node.resolve({ kind: 'name', name }).catch(() => undefined);
        // Start the tunnel while the application is still resolving: the first SYN finds it (nearly) ready.
        if (r) host.connect(node, parseTarget(r.id)).catch(() => undefined);
        return r;
      },
      // DNS-SD (RFC 6763) is the household's to answer: it knows which appliances this phone may see.
      serviceQuery: (query) => node.dnsQuery(query),
    });
  }

  const ctl = await ControlServer.listen(cfg.statusSocket || join(cfg.dataDir, 'terminal.sock'), async (req) => {
    switch (req.cmd) {
      case 'status':
        return { role: 'terminal', id: identity.idHex, ...host.status(engine.counts.socket()), dataplane: dataplane?.status() ?? null, dns: dns?.counts.toJSON() ?? null };
      case 'connect': {
        const started = performance.now();
        // `fresh`: a new Direction Request even when a tunnel to that peer is up (benchmarks of communication start).
        const t = await host.connect(node, parseTarget(String(req.target)), req.fresh === true);
        return { ms: performance.now() - started, startedAtMs: performance.timeOrigin + started, tunnel: t.describe() };
      }
      case 'register': {
        const r = await node.register();
        return { ms: node.registrationMs, v4: r.v4, v6: r.v6 };
      }
      default:
        throw new InputError(`unknown command ${String(req.cmd)}`);
    }
  });
  announce({ role: 'terminal', ready: true, id: identity.idHex, v4: reg.v4, v6: reg.v6, port: bind.port, behindNat: reg.behindNat, registrationMs: node.registrationMs });
  onShutdown(log, async () => {
    watch.stop();
    dns?.close();
    await unrouteNtm?.();
    await ctl.close();
    await dataplane?.stop();
    await host.close();
  });
}
