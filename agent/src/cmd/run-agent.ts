// `ntm agent`: the household agent on the vCPE (paper §3.2.2) with its embedded DC and RS, and the subcommands that
// pair appliances, enroll phones and grant access through the running agent's control socket (the web UI calls the
// same AgentApi).
import { join } from 'node:path';
import { loadSection, readConfigFile } from '../config/schema.js';
import { createLogger } from '../util/log.js';
import { InputError } from '../types/errors.js';
import { AgentRuntime } from '../agent/runtime.js';
import { parseArgs, one, has, overrides } from './args.js';
import { announce, loadOrCreateIdentity, onShutdown, securedDataDir, processMemory } from './common.js';
import { ControlServer, request } from './control-socket.js';
import { agentOperator } from './operator.js';
import { startRsAutoscaler } from './rs-autoscale.js';
import { EXIT_HELP } from './exit.js';
import type { AgentApi, PairInput } from '../types/household.js';
import { LanDiscovery } from '../discovery/index.js';
import { KernelQos } from '../qos/kernel.js';
import { loadOrCreateToken } from '../operator/server.js';
import { createWebApp, type WebApp } from '../../../web-ui/server/app.js';
import { loadOrCreateCertificate, type WebCertificate } from '../../../web-ui/server/certificate.js';
import { lanAddresses, planWebListeners, type LanAddress, type WebListener } from '../agent/web-listen.js';
import type { Logger } from '../util/log.js';
import type { SectionConfig } from '../config/schema.js';
import { loadOrCreateSetupCode, removeSetupCode } from '../../../web-ui/server/setup-code.js';
import { defaultRouteDevice, detectLanInterface } from '../agent/runtime.js';
import { missingNodeFlags } from './node-flags.js';
import { NtmDns } from '../terminal/dns.js';
import { parseEndpoint } from '../protocol/endpoint.js';

export const AGENT_HELP = `ntm agent — the household agent on the vCPE (the RCA proxy for appliances without NTMobile)

  ntm agent [--data-dir DIR] [--advertise WAN-ADDR]... [--listen [::]:7300] [--no-dataplane]
            [--web lan:8080] [--web-tls lan:8443] [--no-web]

Runs the household's DC (UDP 7100, NAT probes on 7101) and RS (7200) and, for every paired LAN
appliance, that appliance's NTM terminal on the tunnel port (7300): it registers the appliance's
identity, answers directions for it, and encrypts/decrypts its traffic on its behalf (NFQUEUE +
iptables-nft, rules in chains NTMA-*; the household's ordinary traffic is never queued). State in
DIR/agent.db (SQLite; DIR is kept 0700, its files 0600). --advertise defaults to the default routes' source
addresses (the WAN side). The web UI answers the LAN only: lan:PORT is the LAN interface's addresses, for sources in
the LAN's prefixes; HTTPS uses a self-signed certificate made at first start, whose SHA-256 fingerprint is printed at
start and shown in Settings. The first-start setup code is in DIR/setup-code (never in the log).

Managing a running agent (same --data-dir):
  ntm agent pair --name NAME (--ip ADDR | --ipv6 ADDR | --mac MAC) [--kind KIND]
  ntm agent devices                      paired and discovered devices
  ntm agent unpair DEVICE-ID             revokes the appliance's identity
  ntm agent enroll --name "PHONE NAME"   a one-time token for \`ntm enroll\` on the phone
  ntm agent phones | remove-phone PHONE-ID
  ntm agent grant --phone PHONE-ID --device DEVICE-ID [--ports 80,443]   (no --ports: all ports)
  ntm agent revoke --phone PHONE-ID --device DEVICE-ID
  ntm agent status [--json]

Sharing a device with another household (its agent reaches it for the devices its owner chooses):
  ntm agent share --device DEVICE-ID --household "NAME" [--ports 80,554]   an invitation code for the other home
  ntm agent shares | unshare PEER-ID        devices shared with other homes; end a share
  ntm agent accept --code CODE --devices 3,5   use a device another home shared (these devices of ours may)
  ntm agent shared | share-users --id N --devices 3 | leave N   devices other homes shared with us

  --metrics-listen ADDR:PORT   Prometheus /metrics for the ISP (default 127.0.0.1:9102; "" disables)

${EXIT_HELP}`;

const CLIENT_COMMANDS = ['pair', 'devices', 'unpair', 'enroll', 'phones', 'remove-phone', 'grant', 'revoke', 'status', 'share', 'shares', 'unshare', 'accept', 'shared', 'share-users', 'leave'];

function deviceIdsOf(text: string | undefined): number[] {
  if (!text) return [];
  return text.split(',').map((p) => {
    const n = Number(p.trim());
    if (!Number.isSafeInteger(n) || n < 1) throw new InputError(`not a device id: ${p}`, 'devices');
    return n;
  });
}

function portsOf(text: string | undefined): number[] {
  if (!text) return [];
  return text.split(',').map((p) => {
    const n = Number(p.trim());
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InputError(`not a port: ${p}`, 'ports');
    return n;
  });
}

/** One control-socket command → one AgentApi call (shared by the daemon and its tests). */
export async function dispatchAgentCommand(api: AgentApi & { status(): Record<string, unknown> }, req: Record<string, unknown>): Promise<unknown> {
  const str = (k: string) => (req[k] === undefined ? undefined : String(req[k]));
  switch (req.cmd) {
    case 'status':
      return { ...api.status(), memory: processMemory() };
    case 'devices':
      return api.devices();
    case 'pair': {
      const input: PairInput = {
        ...(str('name') ? { name: str('name')! } : {}),
        ...(str('kind') ? { kind: str('kind')! } : {}),
        ...(str('ip') ? { ipv4: str('ip')! } : {}),
        ...(str('ipv6') ? { ipv6: str('ipv6')! } : {}),
        ...(str('mac') ? { mac: str('mac')! } : {}),
        ...(req.deviceId !== undefined ? { deviceId: Number(req.deviceId) } : {}),
      };
      return api.pair(input);
    }
    case 'unpair':
      await api.unpair(Number(req.deviceId));
      return { ok: true };
    case 'enroll': {
      const e = api.createEnrollment(str('name') ?? '');
      return { token: e.token, link: e.link, expiresAt: e.expiresAt, name: e.name };
    }
    case 'phones':
      return api.phones();
    case 'remove-phone':
      await api.removePhone(str('phoneId') ?? '');
      return { ok: true };
    case 'grant':
      api.setGrant(str('phoneId') ?? '', Number(req.deviceId), portsOf(str('ports')));
      return api.grants();
    case 'revoke':
      api.revokeGrant(str('phoneId') ?? '', Number(req.deviceId));
      return api.grants();
    case 'grants':
      return api.grants();
    case 'tunnels':
      return api.tunnels();
    case 'health':
      return api.health();
    case 'share':
      return api.createShareInvite(Number(req.deviceId), str('household') ?? '', portsOf(str('ports')));
    case 'shares':
      return api.shares();
    case 'unshare':
      await api.revokeShare(str('phoneId') ?? '');
      return { ok: true };
    case 'accept':
      return api.acceptShare(str('code') ?? '', deviceIdsOf(str('devices')));
    case 'shared':
      return api.remoteShares();
    case 'share-users':
      return api.setRemoteShareUsers(Number(req.id), deviceIdsOf(str('devices')));
    case 'leave':
      await api.removeRemoteShare(Number(req.id));
      return { ok: true };
    default:
      throw new InputError(`unknown command ${String(req.cmd)}`);
  }
}

async function client(sub: string, argv: readonly string[]): Promise<void> {
  const p = parseArgs(argv, ['json', 'help']);
  const dir = one(p, 'data-dir') ?? '/var/lib/ntm/agent';
  const sock = join(dir, 'agent.sock');
  const req: Record<string, unknown> = { cmd: sub };
  for (const [k, v] of p.flags) if (k !== 'data-dir' && k !== 'json') req[k === 'phone' ? 'phoneId' : k === 'device' ? 'deviceId' : k] = v[0];
  if (sub === 'unpair') req.deviceId = p.positional[0];
  if (sub === 'remove-phone' || sub === 'unshare') req.phoneId = p.positional[0];
  if (sub === 'leave') req.id = p.positional[0];
  const r = await request(sock, req, 30_000);
  process.stdout.write((has(p, 'json') || typeof r !== 'object' ? JSON.stringify(r) : JSON.stringify(r, null, 2)) + '\n');
}

export async function runAgent(argv: readonly string[]): Promise<void> {
  const sub = argv[0];
  if (sub && CLIENT_COMMANDS.includes(sub)) return client(sub, argv.slice(1));
  const p = parseArgs(argv, ['help', 'no-dataplane', 'no-rs', 'no-web']);
  if (has(p, 'help')) return void process.stdout.write(AGENT_HELP);
  const file = readConfigFile(one(p, 'config'));
  const ov = overrides(
    p,
    { 'data-dir': 'agent.dataDir', advertise: 'agent.advertise', listen: 'agent.listen', 'lan-interface': 'agent.lanInterface', web: 'agent.web', 'web-tls': 'agent.webTls', 'web-socket': 'agent.webSocket', mtu: 'agent.mtu', 'metrics-listen': 'operator.agentListen' },
    ['no-dataplane', 'no-rs', 'no-web'],
  );
  if (has(p, 'no-web')) {
    ov['agent.web'] = '';
    ov['agent.webTls'] = '';
  }
  if (has(p, 'no-dataplane')) ov['agent.dataplane'] = 'false';
  if (has(p, 'no-rs')) ov['agent.rs'] = 'false';
  const agent = loadSection('agent', file, ov);
  // A household's DC: a /24 (253 devices and phones) and leases that never expire (its own devices keep their
  // addresses until removed), unless the file or the command line says otherwise.
  const fileDc = (file?.['dc'] ?? {}) as Record<string, unknown>;
  const household = { 'dc.poolV4Length': fileDc['poolV4Length'] ?? 24, 'dc.expireAfterS': fileDc['expireAfterS'] ?? 0 };
  const dc = loadSection('dc', file, { 'dc.dataDir': agent.dataDir, ...household, ...ov });
  const rs = loadSection('rs', file, { 'rs.dataDir': agent.dataDir, ...ov });
  const op = loadSection('operator', file, ov);
  const log = createLogger(loadSection('log', file).level);
  const missing = missingNodeFlags('agent');
  if (missing.length > 0) log.warn('started without the agent\'s Node.js flags: its memory will be larger than it need be', { missing: missing.join(' '), hint: `node ${missing.join(' ')} ntm.js agent` });
  securedDataDir(agent.dataDir, log);
  const dcIdentity = await loadOrCreateIdentity(join(agent.dataDir, 'dc.key'));
  const rsIdentity = await loadOrCreateIdentity(join(agent.dataDir, 'rs.key'));
  const runtime = await AgentRuntime.start({ agent, dc, rs, log, dcIdentity, rsIdentity });
  // RS instances beside the household's DC, started and retired with the relayed load (paper §3.1; rsscale.max > 0).
  const dcPort = runtime.dc.port;
  const wan0 = runtime.advertise[0]!;
  const scaler = startRsAutoscaler({
    config: loadSection('rsscale', file, ov),
    dc: runtime.dc,
    dcRef: `${dcIdentity.idHex}@${wan0.includes(':') ? `[${wan0}]` : wan0}:${dcPort}`,
    advertise: runtime.advertise,
    dcDataDir: agent.dataDir,
    log,
  });
  const ctl = await ControlServer.listen(join(agent.dataDir, 'agent.sock'), (req) =>
    req.cmd === 'status' && scaler ? dispatchAgentCommand(runtime, req).then((st) => ({ ...(st as object), autoscaler: scaler.status() })) : dispatchAgentCommand(runtime, req),
  );

  // LAN discovery: the neighbour table and mDNS through the system's Avahi (paper §3.2.2: the appliances to pair).
  const lan = agent.lanInterface || (await detectLanInterface(runtime.advertise));
  let discovery: LanDiscovery | undefined;
  if (lan) {
    discovery = new LanDiscovery({ lanInterface: lan, mdns: agent.mdns, pollMs: agent.discoverS * 1000, log });
    discovery.onChange((devices) => {
      try {
        runtime.store.applyDiscovery(devices);
        runtime.setLanServices(devices);
      } catch (e) {
        log.error('storing discovered devices failed', { err: e });
        return;
      }
      runtime.refreshLanAddresses().catch((e: Error) => log.error('following moved devices failed', { err: e }));
    });
    await discovery.start();
  } else log.warn('no LAN interface found: discovery is off (set agent.lanInterface)');
  // The LAN's DNS for devices other households shared (issue 13): DEVICE.HOUSEHOLD.ntm → their virtual addresses.
  const lanDns = await startLanDns(agent, runtime, lan, log);
  // QoS (paper §3.2.1): the stored rules go back into the kernel now, as they were before a restart.
  if (agent.qos) {
    const wan = agent.wanInterface || (await defaultRouteDevice());
    if (wan || lan) await runtime.startQos(new KernelQos({ log }), wan ?? '', lan ?? '');
    else log.warn('QoS is off: neither a WAN nor a LAN interface was found (set agent.wanInterface, agent.lanInterface)');
  }

  // The household's web page: no default password; the owner proves presence with the one-time setup code. It
  // listens on the LAN side only by default (agent/web-listen.ts), plain and over HTTPS with the agent's own certificate.
  const codeFile = agent.setupCodeFile || join(agent.dataDir, 'setup-code');
  const setupCode = runtime.store.hasOwner() ? null : loadOrCreateSetupCode(codeFile);
  const web = await startWeb(agent, runtime, lan, log, setupCode, codeFile);
  if (setupCode) {
    // The code is a password until it is used: never in the log (journals are kept and shipped), only in its 0600
    // file and, when a person started the agent at a terminal, on that terminal (issue 11, item 8).
    log.info('first start: set the owner password in the web UI with the one-time setup code; it is in its file (readable by root only)', { file: codeFile });
    if (process.stdout.isTTY) process.stdout.write(`Setup code for the first sign-in: ${setupCode} (also in ${codeFile})\n`);
  }
  // /metrics on the ISP's side of the vCPE (loopback by default), never on the household's web page.
  const ops = await agentOperator(runtime, op, log);
  announce({
    role: 'agent',
    ready: true,
    id: dcIdentity.idHex,
    publicKey: dcIdentity.publicKey.toString('hex'),
    wan: runtime.advertise,
    dcPort: runtime.dc.port,
    tunnelPort: runtime.host.bind.port,
    lan: lan ?? null,
    web: web?.plain ?? [],
    webTls: web?.secure ?? [],
    tlsFingerprint: web?.fingerprint ?? null,
    setupCodeFile: setupCode ? codeFile : null,
    metricsPort: ops?.port ?? null,
  });
  onShutdown(log, async () => {
    await ops?.close();
    discovery?.stop();
    for (const d of lanDns) d.close();
    await web?.app.close();
    await ctl.close();
    await scaler?.stop();
    await runtime.stop();
  });
}

/** The agent's LAN DNS on agent.lanDns (same forms as agent.web): names of shared devices only, others refused. */
async function startLanDns(agent: SectionConfig<'agent'>, runtime: AgentRuntime, lan: string | undefined, log: Logger): Promise<NtmDns[]> {
  if (agent.lanDns.length === 0) return [];
  const lanAddrs = lan ? await lanAddresses(lan).catch(() => undefined) : undefined;
  const out: NtmDns[] = [];
  for (const l of planWebListeners(agent.lanDns, lanAddrs, 'agent.lanDns')) {
    const listen = parseEndpoint(l.address);
    out.push(await NtmDns.start({ listen, resolve: (name) => runtime.resolveLanName(name) }));
    log.info('LAN DNS for shared devices', { listen: l.address });
  }
  return out;
}

/** The web UI on its listeners (agent.web plain, agent.webTls HTTPS); undefined when both are empty and no socket. */
async function startWeb(
  agent: SectionConfig<'agent'>,
  runtime: AgentRuntime,
  lan: string | undefined,
  log: Logger,
  setupCode: string | null,
  codeFile: string,
): Promise<{ app: WebApp; plain: string[]; secure: string[]; fingerprint: string | null } | undefined> {
  if (agent.web.length === 0 && agent.webTls.length === 0 && !agent.webSocket) return undefined;
  const usesLan = [...agent.web, ...agent.webTls].some((e) => e.startsWith('lan:'));
  let lanAddrs: LanAddress[] | undefined;
  if (usesLan && lan) lanAddrs = await lanAddresses(lan).catch((e: Error) => (log.warn('cannot read the LAN interface\'s addresses', { iface: lan, err: e }), undefined));
  if (usesLan && !lanAddrs?.length) log.warn('no LAN addresses: the web UI listens on loopback only (set agent.lanInterface, or agent.web / agent.webTls)');
  const plain = planWebListeners(agent.web, lanAddrs, 'agent.web');
  const secure = planWebListeners(agent.webTls, lanAddrs, 'agent.webTls');
  let cert: WebCertificate | undefined;
  if (secure.length > 0) {
    cert = await loadOrCreateCertificate(agent.dataDir, secure.map((l) => l.ip).filter((ip) => ip !== '::' && ip !== '0.0.0.0'));
    // The fingerprint is public (any client sees the certificate); the owner compares it with what the browser shows.
    log.info(cert.created ? 'made the web UI\'s TLS certificate (check this fingerprint against the browser\'s)' : 'web UI TLS certificate', { fingerprint: cert.fingerprint });
  }
  const app = createWebApp({
    api: runtime,
    store: runtime.store,
    setupCode: () => (runtime.store.hasOwner() ? null : setupCode),
    allowedHosts: agent.allowedHosts,
    log,
    onSetupComplete: () => removeSetupCode(codeFile),
    // The ISP's controller sets QoS with this token (the household API's QoS operations take it as a bearer).
    operatorToken: loadOrCreateToken(join(agent.dataDir, 'operator-token')),
    ...(cert ? { tls: { key: cert.key, cert: cert.cert } } : {}),
  });
  const bound = async (list: readonly WebListener[], tls: boolean): Promise<string[]> => {
    const out: string[] = [];
    for (const l of list) {
      const a = await app.listen(l.address, { tls, ...(l.clients ? { clients: l.clients } : {}) });
      out.push(a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
    }
    return out;
  };
  const result = { app, plain: await bound(plain, false), secure: await bound(secure, true), fingerprint: cert?.fingerprint ?? null };
  if (agent.webSocket) await app.listenUnix(agent.webSocket);
  return result;
}
