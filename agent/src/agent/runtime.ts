// The household agent on the vCPE (paper §3.2.2, the RCA proxy): for every paired LAN appliance it *is* that
// appliance's NTM terminal — it holds the appliance's identity, registers it with the embedded DC, answers directions
// for it and encrypts/decrypts on its behalf — while the appliance keeps speaking plain IPv4/IPv6 on its LAN. It also
// runs the embedded DC and RS, enrolls the family's phones, enforces who may reach what, and is what the web UI drives.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import type { SectionConfig } from '../config/schema.js';
import type { Logger } from '../util/log.js';
import type {
  AgentApi,
  AgentEvent,
  DeviceView,
  EnrollmentView,
  GrantView,
  HealthView,
  PairInput,
  PhoneView,
  RemoteShareView,
  ShareInviteView,
  ShareView,
  TrafficView,
  TunnelView,
} from '../types/household.js';
import type { Endpoint } from '../types/net.js';
import { ConflictError, HouseholdFullError, InputError, NotFoundError, NtmError, RegistrationRefusedError } from '../types/errors.js';
import { openDb, type Db } from '../store/db.js';
import { Identity } from '../protocol/identity.js';
import * as NT from '../protocol/node-transaction.js';
import { toHex } from '../crypto/hex.js';
import { canonicalIp, ipFamily, ip4ToBytes as ip4Bytes, ip6ToBytes as ip6Bytes } from '../protocol/ip.js';
import { formatEndpoint, parseEndpoint } from '../protocol/endpoint.js';
import { DcServer, type DcEvent } from '../dc/server.js';
import { openDcBinds } from '../dc/binds.js';
import { openLedger } from '../registry/open.js';
import { RsServer } from '../rs/server.js';
import { TerminalHost, type HostEvent } from '../terminal/host.js';
import { HandshakeClock, HANDSHAKE_CLOCK_FILE } from '../terminal/handshake-clock.js';
import type { DcRef, Node } from '../terminal/node.js';
import { tryIdFromPublicKey } from '../crypto/secp256k1.js';
import { cidrContainsText, parseCidr } from '../protocol/ip.js';
import { ShareNat } from '../dataplane/share-nat.js';
import type { RemoteShareRecord } from './household-store.js';
import { decodeShareInvite, encodeShareInvite, shareLink } from './share-invite.js';
import type { Tunnel } from '../terminal/tunnel.js';
import { UdpBind } from '../dataplane/conn/udp.js';
import { DataEngine } from '../dataplane/engine.js';
import { HouseholdPolicy, type PolicySnapshot } from '../dataplane/policy.js';
import { HouseholdStore } from './household-store.js';
import { makeEnrollment } from './enrollment.js';
import { nameLabel, ntmHostName, ntmLabel } from './names.js';
import { answerServiceQuery, type DnsSdView, type VisibleService } from './dns-sd.js';
import type { DiscoveredDevice, DiscoveredService } from '../discovery/types.js';
import { TrafficHistory, type TrafficSample } from './traffic-history.js';
import type { QosBackend, QosLink, QosPlan, QosRule, QosTarget, QosView } from '../types/qos.js';

const run = promisify(execFile);

export interface AgentRuntimeOptions {
  readonly agent: SectionConfig<'agent'>;
  readonly dc: SectionConfig<'dc'>;
  readonly rs: SectionConfig<'rs'>;
  readonly log: Logger;
  /** Identity files (created on first start): the household DC's and RS's keys. */
  readonly dcIdentity: Identity;
  readonly rsIdentity: Identity;
}

/** A paired appliance's identity, held by the agent (its LAN addresses are the store's, read into each policy). */
interface Paired {
  readonly deviceId: number;
  readonly name: string;
  readonly ntmId: string;
  readonly v4: string;
  readonly v6: string;
  readonly node: Node;
}


/** A device another household shared with this one (issue 13): the identity we hold at its DC, and its flows. */
interface Joined {
  rec: RemoteShareRecord;
  readonly node: Node;
  readonly nat: ShareNat;
  /** Why it does not work now (the other household refused or revoked it), or null. */
  refused: string | null;
}

/** The source addresses of this host's default routes: how phones reach the vCPE (its WAN side). */
export async function defaultRouteSources(): Promise<string[]> {
  const out: string[] = [];
  for (const fam of ['-4', '-6']) {
    try {
      const { stdout } = await run('ip', ['-j', fam, 'route', 'get', fam === '-4' ? '192.0.2.1' : '2001:db8::1'], { timeout: 5000 });
      const r = (JSON.parse(stdout) as Array<{ prefsrc?: string }>)[0];
      if (r?.prefsrc) out.push(canonicalIp(r.prefsrc));
    } catch {
      // no route of that family
    }
  }
  return out;
}

/** The interface of this host's IPv4 default route (a vCPE's WAN), or undefined. */
export async function defaultRouteDevice(): Promise<string | undefined> {
  try {
    const { stdout } = await run('ip', ['-j', '-4', 'route', 'get', '192.0.2.1'], { timeout: 5000 });
    return (JSON.parse(stdout) as Array<{ dev?: string }>)[0]?.dev;
  } catch {
    return undefined;
  }
}

/**
 * The household LAN's interface: the one with a private IPv4 address that is not the way to the default route (on
 * a vCPE, its LAN bridge).
 */
export async function detectLanInterface(wan: readonly string[]): Promise<string | undefined> {
  try {
    const { stdout } = await run('ip', ['-j', 'addr', 'show', 'up'], { timeout: 5000 });
    const links = JSON.parse(stdout) as Array<{ ifname: string; flags?: string[]; addr_info?: Array<{ family: string; local: string }> }>;
    const candidates = links.filter((l) => {
      if (l.flags?.includes('LOOPBACK') || /^(ntm|tun|wg)/.test(l.ifname)) return false;
      const addrs = l.addr_info ?? [];
      if (addrs.some((a) => wan.includes(canonicalIp(a.local)))) return false;
      return addrs.some((a) => a.family === 'inet' && /^(10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.)/.test(a.local));
    });
    return candidates[0]?.ifname;
  } catch {
    return undefined;
  }
}

export class AgentRuntime implements AgentApi {
  private readonly paired = new Map<string, Paired>();
  /** Devices other households shared with this one, by share id (issue 13). */
  private readonly joined = new Map<number, Joined>();
  private stopped = false;
  /** The packet policy in force (and the DC's direction policy): rebuilt whole on every change, never edited. */
  private policy = new HouseholdPolicy({ devices: [], phones: [], grants: [] });
  /** Identities being paired right now: the DC admits them before the store has them. */
  private readonly pendingAdmit = new Set<string>();
  private readonly startedAt = Date.now();
  /** The services each device announces on the LAN now (device id → services), from the latest discovery snapshot. */
  private lanServices = new Map<number, readonly DiscoveredService[]>();
  /** QoS enforcement (startQos), the interfaces it shapes, and how the last apply went. */
  private qosBackend: { backend: QosBackend; wan: string; lan: string } | undefined;
  private qosState: { applied: boolean; error: string | null } = { applied: false, error: null };
  /** The plan last enforced, as JSON: a tunnel event that changes nothing in it applies nothing. */
  private qosApplied = '';
  private readonly version: string;
  /** Per-connection traffic of the last minutes (the status page's charts), sampled from the tunnels' counters. */
  private readonly trafficHistory = new TrafficHistory();
  private readonly trafficTimer: NodeJS.Timeout;

  private constructor(
    private readonly o: AgentRuntimeOptions,
    readonly db: Db,
    readonly store: HouseholdStore,
    readonly dc: DcServer,
    readonly rs: RsServer | undefined,
    readonly host: TerminalHost,
    readonly engine: DataEngine,
    readonly advertise: string[],
  ) {
    try {
      this.version = (JSON.parse(readFileSync(join(import.meta.dirname, '../../../../package.json'), 'utf8')) as { version: string }).version;
    } catch {
      this.version = 'unknown';
    }
    this.trafficTimer = setInterval(() => this.trafficHistory.sample(Date.now(), this.trafficSamples()), this.trafficHistory.stepMs);
    this.trafficTimer.unref();
  }

  static async start(o: AgentRuntimeOptions): Promise<AgentRuntime> {
    const log = o.log.child({ role: 'agent' });
    const advertise = o.agent.advertise.length > 0 ? o.agent.advertise.map(canonicalIp) : await defaultRouteSources();
    if (advertise.length === 0) throw new NtmError('the agent has no WAN address (no default route); set agent.advertise');
    const db = openDb(join(o.agent.dataDir, 'agent.db'));
    const store = new HouseholdStore(db);
    if (o.agent.household && store.householdName() !== o.agent.household && !store.hasOwner()) store.setHouseholdName(o.agent.household);
    const dcPort = Number(/:(\d+)$/.exec(o.dc.listen)?.[1] ?? 7100);
    const rsPort = Number(/:(\d+)$/.exec(o.rs.listen)?.[1] ?? 7200);
    const ep = (a: string, port: number) => (ipFamily(a) === 6 ? `[${a}]:${port}` : `${a}:${port}`);
    const relays = o.agent.rs ? advertise.map((a) => `${o.rsIdentity.idHex}@${ep(a, rsPort)}`) : [];
    // The DC and host call back into the runtime that is built from them.
    const ref: { self?: AgentRuntime } = {};
    // The household's DC records to the ledger dc.ledger names (SQLite by default; an ISP's chain, whose address
    // blocks then become the DC's pools).
    const ledger = await openLedger(o.dc, db, o.dcIdentity, o.log);
    const dcConfig = Object.freeze({
      ...ledger.cfg,
      advertise: o.dc.advertise.length > 0 ? o.dc.advertise : advertise.map((a) => ep(a, dcPort)),
      relays: [...o.dc.relays, ...relays.map((r) => ({ id: r.slice(0, r.indexOf('@')), endpoint: parseEndpoint(r.slice(r.indexOf('@') + 1)) }))],
    });
    const dc = await DcServer.start({
      identity: o.dcIdentity,
      db,
      registry: ledger.registry,
      ...(await openDcBinds(dcConfig)),
      config: dcConfig,
      log: o.log,
      admit: (id, token) => ref.self?.admit(id, token) ?? false,
      // The household's own devices and phones keep their addresses until removed (dc.expireAfterS is 0 here anyway).
      keepLease: (id) => ref.self?.store.isAdmitted(id) ?? true,
      mayAdmit: (id, token) => ref.self?.mayAdmit(id, token) ?? false,
      allowDirection: (from, to) => ref.self?.allowDirection(from, to) ?? false,
      answerDns: (from, query) => ref.self?.answerDns(from, query),
      onEvent: (e) => ref.self?.onDcEvent(e),
    });
    let rs: RsServer | undefined;
    if (o.agent.rs) {
      rs = await RsServer.start({
        identity: o.rsIdentity,
        config: Object.freeze({ ...o.rs, reportTo: [{ id: o.dcIdentity.idHex, endpoint: parseEndpoint(ep(advertise[0]!, dcPort)) }] }),
        advertise: advertise.map((a) => parseEndpoint(ep(a, rsPort))),
        log: o.log,
      });
    }
    const bind = await UdpBind.open({ listen: o.agent.listen, openData: true });
    const locals = (): Endpoint[] => advertise.map((a) => ({ family: ipFamily(a) as 4 | 6, address: a, port: bind.port }));
    const handshakeClock = new HandshakeClock(join(o.agent.dataDir, HANDSHAKE_CLOCK_FILE), o.log);
    const host = new TerminalHost({
      bind,
      locals,
      log: o.log,
      handshakeTime: () => handshakeClock.next(),
      onEvent: (e) => ref.self?.onHostEvent(e),
    });
    const engine = new DataEngine({ bind, tunnels: host, policy: new HouseholdPolicy({ devices: [], phones: [], grants: [] }), mtu: o.agent.mtu, log: o.log });
    const self = new AgentRuntime(o, db, store, dc, rs, host, engine, advertise);
    ref.self = self;
    await self.loadPaired();
    self.loadRemoteShares();
    self.reconcile();
    self.reconfigure();
    if (o.agent.dataplane) {
      await engine.start({
        queueIn: o.agent.queueIn,
        queueOut: o.agent.queueOut,
        queueTcp: o.agent.queueTcp,
        sealWholeGso: o.agent.sealWholeGso,
        receiveTun: o.agent.receiveTun,
        rules: {
          chainPrefix: 'NTMA',
          virtualRanges: [o.dc.virtualV4, o.dc.virtualV6],
          forward: true,
          pairedSources: self.policy.lanSources(),
          innerMtu: o.agent.mtu,
        },
      });
    }
    log.info('agent started', {
      dc: o.dcIdentity.idHex,
      wan: advertise,
      devices: self.paired.size,
      phones: store.phones().length,
      port: bind.port,
    });
    store.addEvent('agent.started', `The agent started (${self.paired.size} paired devices)`);
    return self;
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Identities of paired appliances.

  private dcRef(): { id: Buffer; publicKey: Buffer; endpoint: Endpoint } {
    const port = this.dc.port;
    const a = this.advertise[0]!;
    // The appliances register with the household DC over the WAN address, so the DC sees (and tells phones) the
    // address phones can reach, not loopback.
    return { id: this.o.dcIdentity.id, publicKey: this.o.dcIdentity.publicKey, endpoint: { family: ipFamily(a) as 4 | 6, address: a, port } };
  }

  private async loadPaired(): Promise<void> {
    const ids = this.store.pairedIdentities();
    await Promise.all(
      ids.map(async (p) => {
        const identity = Identity.fromPrivateKey(p.privateKeyHex);
        const node = this.host.addNode(identity, this.dcRef(), { name: ntmLabel(p.name, p.ntmId) });
        const r = await node.register().catch((e: Error) => {
          this.o.log.error('a paired device could not register', { device: p.name, err: e });
          return undefined;
        });
        const v4 = r?.v4 ?? p.virtualV4;
        const v6 = r?.v6 ?? p.virtualV6;
        if (!v4 || !v6) return;
        this.paired.set(p.ntmId, { deviceId: p.deviceId, name: p.name, ntmId: p.ntmId, v4, v6, node });
      }),
    );
  }

  /** What the packet policy is built from, as the store and the DC know it now. */
  private snapshot(): PolicySnapshot {
    const lan = new Map(this.store.devices().map((d) => [d.ntmId, d] as const));
    return {
      devices: [...this.paired.values()].map((e) => ({ ntmId: e.ntmId, lan4: lan.get(e.ntmId)?.ipv4 ?? null, lan6: lan.get(e.ntmId)?.ipv6 ?? null, v4: e.v4, v6: e.v6 })),
      // Phones, and the other households a device is shared with: to the packet policy both are peers with grants.
      phones: this.store.peers().map((p) => {
        // Phones register with the household DC: their virtual addresses are in its table.
        const rec = this.dc.terminals.byId.get(p.id);
        return rec ? { id: p.id, v4: rec.v4, v6: rec.v6 } : { id: p.id };
      }),
      grants: this.store.accessRules(),
      shares: [...this.joined.values()].flatMap((j) => {
        const r = j.node.registration;
        if (!r || j.refused || !j.rec.deviceV4 || !j.rec.deviceV6) return [];
        const users = j.rec.users.flatMap((id) => {
          const d = this.store.device(id);
          return [d.ipv4, d.ipv6].filter((a): a is string => a !== null && !/^fe[89ab]/i.test(a));
        });
        return [{ node: j.node.id, v4: r.v4, v6: r.v6, deviceV4: j.rec.deviceV4, deviceV6: j.rec.deviceV6, users, nat: j.nat }];
      }),
    };
  }

  /**
   * Builds the policy whole from a fresh snapshot and hands it to the engine (tailscale's Reconfig): called on every
   * change of paired devices, phones, grants or LAN addresses. Returns the policy it replaced.
   */
  private reconfigure(): HouseholdPolicy {
    const old = this.policy;
    this.policy = new HouseholdPolicy(this.snapshot());
    this.engine.reconfig(this.policy);
    return old;
  }

  /**
   * Discovery saw paired devices at new LAN addresses (a DHCP lease changed): the data path follows, without touching
   * identities or virtual addresses. Returns how many devices moved.
   */
  async refreshLanAddresses(): Promise<number> {
    const old = this.reconfigure();
    let moved = 0;
    for (const e of this.paired.values()) {
      const was = old.lanSourcesOf(e.ntmId);
      const is = this.policy.lanSourcesOf(e.ntmId);
      if (was.join() === is.join()) continue;
      moved++;
      this.o.log.info('a paired device moved on the LAN', { device: e.name, from: was, to: is });
    }
    if (moved > 0) {
      await this.engine.setPairedSources(this.policy.lanSources());
      await this.enforceQos();
    }
    return moved;
  }

  /** After a crash between the store's commit and the DC's: whatever the household no longer admits is revoked. */
  private reconcile(): void {
    for (const rec of this.dc.terminals.byId.values()) {
      if (!rec.revoked && !this.store.isAdmitted(rec.id)) {
        this.dc.revoke(rec.id);
        this.o.log.info('revoked a terminal the household no longer admits', { id: rec.id });
      }
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // The household's policy, asked by the DC and by the data path.

  private admit(id: string, token: Uint8Array): boolean {
    if (this.pendingAdmit.has(id) || this.store.isAdmitted(id)) return true;
    if (token.length === 0) return false;
    const phone = this.store.consumeEnrollment(token, id);
    if (!phone) return false;
    this.o.log.info('phone enrolled', { id, name: phone.name });
    return true;
  }

  /** admit() without its side effect, for the DC to ask before it spends an ECDH on an unknown ID. */
  private mayAdmit(id: string, token: Uint8Array): boolean {
    return this.pendingAdmit.has(id) || (token.length > 0 && this.store.enrollmentOpen(token, id)) || this.store.isAdmitted(id);
  }

  private allowDirection(from: string, to: string): boolean {
    return this.policy.allowsDirection(from, to);
  }

  // ---------------------------------------------------------------------------------------------------------------
  // DNS-SD for the phones (agent/dns-sd.ts): what each phone may see of the appliances' services.

  /** Takes a discovery snapshot's services (after the store took its devices): what DNS-SD answers from. */
  setLanServices(found: readonly DiscoveredDevice[]): void {
    const next = new Map<number, readonly DiscoveredService[]>();
    for (const d of found) {
      if (d.services.length === 0) continue;
      const id = this.store.idOfDiscovered(d);
      if (id !== undefined) next.set(id, [...(next.get(id) ?? []), ...d.services]);
    }
    this.lanServices = next;
  }

  /** The household's browse domain: its name as a DNS label (RFC 6763 §11), "home" when it has none usable. */
  serviceDomain(): string {
    return `${nameLabel(this.store.householdName()) ?? 'home'}.ntm`;
  }

  /** What phone `phoneId` may discover now: services of the paired devices it is granted, on granted ports only. */
  serviceView(phoneId: string): DnsSdView {
    const services: VisibleService[] = [];
    const byNtm = new Map([...this.paired.values()].map((e) => [e.ntmId, e] as const));
    for (const g of this.store.accessRules()) {
      if (g.phoneId !== phoneId.toLowerCase()) continue;
      const e = byNtm.get(g.deviceNtmId);
      if (!e) continue;
      for (const s of this.lanServices.get(g.deviceId) ?? []) {
        if (g.ports.length > 0 && !g.ports.includes(s.port)) continue;
        services.push({ type: s.type, instance: s.name, port: s.port, txt: s.txt, host: ntmHostName(e.name, e.ntmId), v4: e.v4, v6: e.v6 });
      }
    }
    return { domain: this.serviceDomain(), services };
  }

  private answerDns(from: string, query: Uint8Array): Uint8Array | undefined {
    // Only the household's phones browse; an appliance's identity is the agent's own.
    if (!this.store.phones().some((p) => p.id === from)) return undefined;
    return answerServiceQuery(query, this.serviceView(from));
  }

  // ---------------------------------------------------------------------------------------------------------------
  // AgentApi: what the web UI and the CLI call.

  devices(): DeviceView[] {
    return this.store.devices();
  }

  async pair(input: PairInput): Promise<DeviceView> {
    const target = this.store.resolvePair(input);
    const identity = Identity.generate();
    this.pendingAdmit.add(identity.idHex);
    const node = this.host.addNode(identity, this.dcRef(), { name: ntmLabel(target.name, identity.idHex) });
    try {
      const r = await node.register();
      const priv = identity.exportPrivateKey();
      const view = this.store.pair(input, { privateKeyHex: toHex(priv, false), ntmId: identity.idHex, virtualV4: r.v4, virtualV6: r.v6 });
      priv.fill(0);
      this.paired.set(identity.idHex, { deviceId: view.id, name: view.name, ntmId: identity.idHex, v4: r.v4, v6: r.v6, node });
      this.reconfigure();
      await this.engine.setPairedSources(this.policy.lanSources());
      this.o.log.info('device paired', { device: view.name, id: identity.idHex, v4: r.v4, v6: r.v6 });
      return view;
    } catch (e) {
      this.host.removeNode(identity.idHex);
      this.dc.revoke(identity.idHex);
      if (e instanceof RegistrationRefusedError && e.reason === 'pool-full') {
        this.o.log.warn('pairing refused: the household DC has no free address', { device: target.name, capacity: e.limit });
        throw new HouseholdFullError(e.limit);
      }
      throw e;
    } finally {
      this.pendingAdmit.delete(identity.idHex);
    }
  }

  async unpair(deviceId: number): Promise<void> {
    const { device, ntmId } = this.store.unpair(deviceId);
    const e = this.paired.get(ntmId);
    // The revocation goes to the registry signed by the appliance's own key, which the agent holds.
    const nt = e ? NT.encode(NT.sign(e.node.identity, { dcId: this.o.dcIdentity.id, revoked: true, timestamp: Date.now() })) : undefined;
    this.dc.revoke(ntmId, nt);
    // Removed: its address returns to the pool; the revocation stays (dc_revoked) and so does the ledger's record.
    this.dc.release(ntmId);
    this.paired.delete(ntmId);
    this.host.removeNode(ntmId);
    this.reconfigure();
    await this.engine.setPairedSources(this.policy.lanSources());
    await this.enforceQos();
    this.o.log.info('device unpaired', { device: device.name, id: ntmId });
  }

  phones(): PhoneView[] {
    return this.store.phones().map((p) => {
      const rec = this.dc.terminals.byId.get(p.id);
      return { ...p, online: this.dc.isOnline(p.id), virtualV4: rec?.v4 ?? null };
    });
  }

  createEnrollment(name: string): EnrollmentView {
    const e = makeEnrollment({
      dcPublicKey: this.o.dcIdentity.publicKey,
      dcEndpoints: this.advertise.map((a) => ({ family: ipFamily(a) as 4 | 6, address: a, port: this.dc.port })),
      household: this.store.householdName(),
      ttlMs: this.o.agent.enrollTtlS * 1000,
      now: Date.now(),
    });
    const stored = this.store.createEnrollment(name, e.secret, e.expiresAt);
    return { token: e.token, link: e.link, qrSvg: e.qrSvg, expiresAt: stored.expiresAt, name: stored.name };
  }

  async removePhone(phoneId: string): Promise<void> {
    const p = this.store.removePhone(phoneId);
    this.dc.revoke(p.id);
    this.dc.release(p.id);
    const cut = this.host.dropPeer(p.id);
    this.reconfigure();
    await this.enforceQos();
    this.o.log.info('phone removed', { phone: p.name, id: p.id, tunnelsCut: cut });
  }

  grants(): GrantView[] {
    return this.store.grants();
  }

  setGrant(phoneId: string, deviceId: number, ports: readonly number[]): void {
    this.store.setGrant(phoneId, deviceId, ports);
    this.reconfigure();
  }

  revokeGrant(phoneId: string, deviceId: number): void {
    this.store.revokeGrant(phoneId, deviceId);
    this.reconfigure();
    const dev = this.store.device(deviceId);
    // Existing tunnels between them end now, not at their next rekey.
    if (dev.ntmId) {
      const e = this.paired.get(dev.ntmId);
      if (e) for (const t of this.host.allTunnels()) if (t.peerId === phoneId.toLowerCase() && this.host.tunnelTo(e.node, t.peerId) === t) this.host.dropPeer(t.peerId);
    }
  }

  health(): HealthView {
    const dcs = this.dc.status() as { terminals: number; online: number };
    const rss = this.rs?.status() as { tunnels: unknown[] } | undefined;
    return {
      agent: { ok: true, uptimeS: Math.round((Date.now() - this.startedAt) / 1000), version: this.version },
      dc: { ok: true, id: this.dc.idHex, terminals: dcs.terminals, online: dcs.online },
      rs: { ok: !!this.rs, id: this.rs?.idHex ?? '', tunnels: rss?.tunnels.length ?? 0 },
      dataplane: { ok: !this.o.agent.dataplane || this.engine.started, drops: this.engine.counts.drops() },
    };
  }

  /** Each paired device's tunnel to each peer: the one the host would use now (older ones are being replaced). */
  private *connections(): Generator<{ device: Paired; tunnel: Tunnel }> {
    for (const e of this.paired.values()) {
      for (const t of this.host.allTunnels()) if (this.host.tunnelTo(e.node, t.peerId) === t) yield { device: e, tunnel: t };
    }
  }

  tunnels(): TunnelView[] {
    const phoneName = new Map(this.store.peers().map((p) => [p.id, p.name]));
    return [...this.connections()].map(({ device: e, tunnel: t }) => ({
      device: e.name,
      peer: t.peerId,
      peerName: phoneName.get(t.peerId) ?? t.route.peerName,
      path: t.kind,
      state: t.state,
      rttMs: Math.round(t.rttMs * 10) / 10,
      txBytes: t.stats.txBytes,
      rxBytes: t.stats.rxBytes,
    }));
  }

  traffic(): TrafficView {
    return this.trafficHistory.view();
  }

  private trafficSamples(): TrafficSample[] {
    const phoneName = new Map(this.store.peers().map((p) => [p.id, p.name]));
    return [...this.connections()].map(({ device: e, tunnel: t }) => ({
      key: `${e.ntmId}/${t.peerId}`,
      device: e.name,
      peer: t.peerId,
      peerName: phoneName.get(t.peerId) ?? t.route.peerName,
      tunnel: t,
      txBytes: t.stats.txBytes,
      rxBytes: t.stats.rxBytes,
      txPackets: t.stats.txPackets,
      rxPackets: t.stats.rxPackets,
    }));
  }

  events(limit?: number): AgentEvent[] {
    return this.store.events(limit);
  }

  onEvent(listener: (e: AgentEvent) => void): () => void {
    return this.store.onEvent(listener);
  }

  // ---------------------------------------------------------------------------------------------------------------

  private onDcEvent(e: DcEvent): void {
    // A phone registered: its virtual addresses join the policy (the DC's event, not a poll).
    if (e.kind === 'registered' && !this.paired.has(e.id) && (e.first || !this.policy.knowsPhoneAt(e.id, e.v4))) this.reconfigure();
    if (e.kind === 'direction-refused') this.store.addEvent('access.refused', `${this.describe(e.from)} may not reach ${this.describe(e.target)}: the connection was refused (${e.status})`);
  }

  /** A terminal as the household knows it (a phone's or device's name) from its ID, virtual address or .ntm name. */
  private describe(who: string): string {
    const w = who.toLowerCase().replace(/\.$/, '');
    const label = w.replace(/\.ntm$/, '');
    const phone = this.store.peers().find((p) => p.id === w);
    if (phone) return phone.name;
    for (const e of this.paired.values()) {
      if (e.ntmId === w || e.v4 === w || canonicalIp(e.v6) === w || ntmLabel(e.name, e.ntmId) === label) return e.name;
    }
    return who;
  }

  private onHostEvent(e: HostEvent): void {
    // A share's identity registered again (the other agent restarted): addresses may have changed.
    if (e.kind === 'registered' && [...this.joined.values()].some((j) => j.node.id === e.node)) void this.followShares().catch(() => undefined);
    const name = (id: string) => this.paired.get(id)?.name ?? id;
    const phone = (id: string) => this.store.peers().find((p) => p.id === id)?.name ?? id;
    // A phone's tunnel came up or moved: its outer endpoint may have changed, and its QoS rule follows it.
    if (e.kind === 'tunnel-up' || e.kind === 'tunnel-moved') void this.enforceQos();
    if (e.kind === 'tunnel-up') this.store.addEvent('tunnel.up', `${phone(e.peer)} ↔ ${name(e.node)}: ${e.path} tunnel up in ${Math.round(e.setupMs)} ms`);
    else if (e.kind === 'tunnel-moved') this.store.addEvent('tunnel.moved', `${phone(e.peer)} ↔ ${name(e.node)} moved (${e.path}); ${Math.round(e.interruptionMs)} ms without traffic`);
    else if (e.kind === 'tunnel-failed') this.store.addEvent('tunnel.failed', `${phone(e.peer)} ↔ ${name(e.node)} failed: ${e.why}`);
  }

  status(): Record<string, unknown> {
    return {
      role: 'agent',
      id: this.dc.idHex,
      wan: this.advertise,
      devices: [...this.paired.values()].map((e) => ({ id: e.deviceId, name: e.name, ntmId: e.ntmId })),
      phones: this.phones(),
      dataplane: this.engine.status(),
      dnsSd: { domain: this.serviceDomain(), devicesWithServices: this.lanServices.size },
      qos: this.qos(),
      dc: this.dc.status(),
      rs: this.rs?.status() ?? null,
      terminal: this.host.status(this.engine.counts.socket()),
      endpoints: { dc: this.dc.port, rs: this.rs?.port ?? null, tunnels: this.host.bind.port, wan: this.advertise.map((a) => formatEndpoint({ family: ipFamily(a) as 4 | 6, address: a, port: this.host.bind.port })) },
    };
  }

  // ---------------------------------------------------------------------------------------------------------------
  // QoS (paper §3.2.1): rules from the store, enforced by a QosBackend (qos/kernel.ts), restored at every start.

  /** Starts enforcing: puts the stored rules into the kernel now (after a restart: as they were). */
  async startQos(backend: QosBackend, wan: string, lan: string): Promise<void> {
    this.qosBackend = { backend, wan, lan };
    await this.enforceQos();
  }

  /** The whole plan from the store, the LAN addresses discovery knows and the phones' live tunnel endpoints. */
  qosPlan(): QosPlan {
    const { devices, phones } = this.store.qos.rules();
    const targets: QosTarget[] = [];
    for (const r of devices) {
      const d = this.store.device(r.deviceId);
      const lan = [d.ipv4, d.ipv6].filter((a): a is string => a !== null);
      targets.push({ key: `device:${r.deviceId}`, rule: r, lanAddresses: lan, tunnelEndpoints: [] });
    }
    for (const r of phones) {
      // Direct paths only: a relayed tunnel's datagrams go to the RS, shared with other phones' (README: QoS).
      const eps = new Map<string, Endpoint>();
      for (const t of this.host.allTunnels()) if (t.peerId === r.phoneId && t.path === 'direct' && t.endpoint) eps.set(formatEndpoint(t.endpoint), t.endpoint);
      targets.push({ key: `phone:${r.phoneId}`, rule: r, lanAddresses: [], tunnelEndpoints: [...eps.values()] });
    }
    const q = this.qosBackend;
    return { link: this.store.qos.link(), wanInterface: q?.wan ?? '', lanInterface: q?.lan ?? '', tunnelPort: this.host.bind.port, targets };
  }

  private async enforceQos(force = false): Promise<void> {
    const q = this.qosBackend;
    if (!q) return;
    const plan = this.qosPlan();
    const json = JSON.stringify(plan);
    if (!force && json === this.qosApplied && this.qosState.applied) return;
    try {
      await q.backend.apply(plan);
      this.qosApplied = json;
      this.qosState = { applied: true, error: null };
    } catch (e) {
      this.qosState = { applied: false, error: (e as Error).message };
      this.o.log.error('QoS could not be enforced', { err: e });
    }
  }

  qos(): QosView {
    return {
      link: this.store.qos.link(),
      ...this.store.qos.rules(),
      enforcement: { backend: this.qosBackend?.backend.name ?? 'none (agent.qos is off)', ...this.qosState },
    };
  }

  async setQosRule(target: { readonly deviceId: number } | { readonly phoneId: string }, rule: QosRule | null): Promise<QosView> {
    if ('deviceId' in target) this.store.qos.setDeviceRule(target.deviceId, rule);
    else this.store.qos.setPhoneRule(target.phoneId, rule);
    await this.enforceQos(true);
    return this.qos();
  }

  async setQosLink(link: QosLink): Promise<QosView> {
    this.store.qos.setLink(link);
    await this.enforceQos(true);
    return this.qos();
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Devices shared between households (issue 13, part 1; paper §3.2.2, last paragraph: two agents let two non-NTM
  // devices talk). Sharing side: the other household's agent enrolls at our DC with an invitation whose enrollment
  // names the device and ports, and is from then on a peer of kind 'household' with that grant — the policy treats it
  // as a phone. Accepting side: the agent registers an identity of its own at the sharing household's DC, gives the
  // shared device's virtual addresses and a name on the LAN DNS to the devices the household chose, and translates
  // their flows to that identity's address (dataplane/share-nat.ts), so each side's policy holds.

  shares(): ShareView[] {
    const households = this.store.households();
    const byId = new Map(households.map((h) => [h.id, h] as const));
    const out: ShareView[] = [];
    for (const g of this.store.accessRules()) {
      const h = byId.get(g.phoneId);
      if (!h) continue;
      out.push({ peerId: h.id, household: h.name, deviceId: g.deviceId, device: this.store.device(g.deviceId).name, ports: g.ports, since: h.enrolledAt, online: this.dc.isOnline(h.id) });
    }
    return out;
  }

  createShareInvite(deviceId: number, household: string, ports: readonly number[]): ShareInviteView {
    const dev = this.store.device(deviceId);
    if (!dev.paired || !dev.ntmId) throw new ConflictError(`${dev.name || 'this device'} is not paired; pair it first`);
    const e = makeEnrollment({
      dcPublicKey: this.o.dcIdentity.publicKey,
      dcEndpoints: this.advertise.map((a) => ({ family: ipFamily(a) as 4 | 6, address: a, port: this.dc.port })),
      household: this.store.householdName(),
      ttlMs: this.o.agent.shareTtlS * 1000,
      now: Date.now(),
    });
    const stored = this.store.createEnrollment(household, e.secret, e.expiresAt, { deviceId, ports });
    const code = encodeShareInvite(ntmLabel(dev.name, dev.ntmId), e.token);
    return { code, link: shareLink(code), expiresAt: stored.expiresAt, household: stored.name, deviceId, ports: [...new Set(ports)].sort((x, y) => x - y) };
  }

  async revokeShare(peerId: string): Promise<void> {
    const id = peerId.toLowerCase();
    if (!this.store.households().some((h) => h.id === id)) throw new NotFoundError(`no household shares a device as ${peerId}`);
    await this.removePhone(id);
  }

  remoteShares(): RemoteShareView[] {
    return [...this.joined.values()].map((j) => this.remoteView(j));
  }

  private remoteView(j: Joined): RemoteShareView {
    const { rec } = j;
    return {
      id: rec.id,
      household: rec.household,
      device: rec.device,
      name: this.sharedName(rec),
      virtualV4: rec.deviceV4,
      virtualV6: rec.deviceV6,
      users: rec.users,
      online: !j.refused && j.node.registered,
      acceptedAt: rec.acceptedAt,
    };
  }

  /** "<device>.<household>.ntm": the shared device's name on this household's LAN DNS. */
  private sharedName(rec: RemoteShareRecord): string {
    return `${rec.device}.${nameLabel(rec.household) ?? 'home'}.ntm`;
  }

  /** The sharing household's DC as the invitation gave it: an address of a family this agent has, the first else. */
  private shareDc(dcPublicKey: string, endpoints: readonly string[]): DcRef {
    const key = Buffer.from(dcPublicKey, 'hex');
    const id = tryIdFromPublicKey(key);
    if (!id) throw new InputError('the invitation names an invalid DC key', 'code');
    const eps = endpoints.map((e) => parseEndpoint(e));
    const families = new Set(this.advertise.map((a) => ipFamily(a)));
    return { id, publicKey: key, endpoint: eps.find((e) => families.has(e.family)) ?? eps[0]! };
  }

  private joinNode(rec: { privateKeyHex: string; dcPublicKey: string; dcEndpoints: readonly string[]; secret: Uint8Array }): Node {
    const identity = Identity.fromPrivateKey(rec.privateKeyHex);
    // No name at the other household's DC: its names are its own devices' and phones'.
    return this.host.addNode(identity, this.shareDc(rec.dcPublicKey, rec.dcEndpoints), { token: rec.secret });
  }

  /** At start: every accepted share's identity registers again (in the background: the other agent may be down). */
  private loadRemoteShares(): void {
    for (const rec of this.store.remoteShares.list()) {
      const j: Joined = { rec, node: this.joinNode(rec), nat: new ShareNat(), refused: null };
      this.joined.set(rec.id, j);
      void this.keepJoined(j);
    }
  }

  /** Registers a share's identity until it works (every 5 s), then learns the shared device's addresses. */
  private async keepJoined(j: Joined): Promise<void> {
    while (!this.stopped && this.joined.get(j.rec.id) === j && !j.node.registered) {
      try {
        await j.node.register();
      } catch (e) {
        if (e instanceof RegistrationRefusedError) {
          j.refused = e.message;
          this.o.log.warn('the other household refused our identity for a shared device', { household: j.rec.household, device: j.rec.device, err: e });
          return;
        }
        this.o.log.warn('the other household\'s DC did not answer; trying again', { household: j.rec.household, err: e });
        await new Promise((r) => setTimeout(r, 5000).unref());
      }
    }
    if (this.stopped || this.joined.get(j.rec.id) !== j) return;
    await this.learnSharedDevice(j);
    await this.followShares();
  }

  /** Asks the sharing household's DC for the shared device's virtual addresses (they outlive restarts; kept). */
  private async learnSharedDevice(j: Joined): Promise<void> {
    const r = await j.node.resolve({ kind: 'name', name: j.rec.device }).catch(() => undefined);
    if (!r) return;
    if (r.v4 !== j.rec.deviceV4 || r.v6 !== j.rec.deviceV6) {
      this.store.remoteShares.setDeviceAddresses(j.rec.id, r.v4, r.v6);
      j.rec = this.store.remoteShares.get(j.rec.id);
    }
    // The firewall queues LAN packets to the virtual ranges only; a share from a DC with another range is not caught.
    if (!cidrContainsText(parseCidr(this.o.dc.virtualV4), r.v4))
      this.o.log.warn('a shared device is outside this agent\'s virtual range (dc.virtualV4): its packets are not caught', { device: this.sharedName(j.rec), v4: r.v4 });
  }

  /** A share changed (registered, users, removed): the policy, and the LAN sources the firewall queues, follow. */
  private async followShares(): Promise<void> {
    this.reconfigure();
    await this.engine.setPairedSources(this.policy.lanSources());
  }

  async acceptShare(code: string, users: readonly number[]): Promise<RemoteShareView> {
    const d = decodeShareInvite(code);
    if (!d.ok) throw new InputError(d.message, 'code');
    const { device, token } = d.invite;
    if (token.dcId === this.o.dcIdentity.idHex) throw new ConflictError('this invitation is from this home itself');
    if (this.store.remoteShares.list().some((r) => r.household === token.household && r.device === device))
      throw new ConflictError(`${device} of "${token.household}" is already shared with this home`);
    for (const u of users) this.store.device(u);
    const identity = Identity.generate();
    const priv = identity.exportPrivateKey();
    const base = { privateKeyHex: toHex(priv, false), dcPublicKey: token.dcPublicKey, dcEndpoints: token.dcEndpoints.map((e) => formatEndpoint(e)), secret: token.secret };
    priv.fill(0);
    const node = this.joinNode(base);
    try {
      await node.register();
    } catch (e) {
      this.host.removeNode(node.id);
      if (e instanceof RegistrationRefusedError) throw new ConflictError('the other home did not accept this invitation (already used, expired or withdrawn); ask for a new one');
      throw e;
    }
    const rec = this.store.remoteShares.add({ ...base, household: token.household, device, ntmId: identity.idHex, users });
    const j: Joined = { rec, node, nat: new ShareNat(), refused: null };
    this.joined.set(rec.id, j);
    await this.learnSharedDevice(j);
    await this.followShares();
    this.o.log.info('accepted a shared device', { device: this.sharedName(j.rec), id: identity.idHex, users: rec.users });
    return this.remoteView(j);
  }

  setRemoteShareUsers(id: number, users: readonly number[]): RemoteShareView {
    const j = this.joined.get(id);
    if (!j) throw new NotFoundError(`there is no accepted share ${id}`);
    j.rec = this.store.remoteShares.setUsers(id, users);
    const allowed = new Set(
      j.rec.users.flatMap((u) => {
        const d = this.store.device(u);
        return [d.ipv4, d.ipv6].filter((a): a is string => a !== null).map((a) => Buffer.from(a.includes(':') ? ip6Bytes(a) : ip4Bytes(a)).toString('hex'));
      }),
    );
    // A device no longer allowed loses its flows now, not when they idle out.
    j.nat.forget((lan) => allowed.has(lan.toString('hex')));
    void this.followShares().catch((e: Error) => this.o.log.error('following a share\'s users failed', { err: e }));
    return this.remoteView(j);
  }

  async removeRemoteShare(id: number): Promise<void> {
    const j = this.joined.get(id);
    if (!j) throw new NotFoundError(`there is no accepted share ${id}`);
    this.store.remoteShares.remove(id);
    this.joined.delete(id);
    this.host.removeNode(j.node.id);
    await this.followShares();
  }

  /** The LAN DNS (agent.lanDns): a shared device's name ("camera.tanaka" without ".ntm") → its virtual addresses. */
  async resolveLanName(name: string): Promise<{ v4: string; v6: string } | undefined> {
    const n = name.toLowerCase();
    for (const j of this.joined.values()) {
      if (this.sharedName(j.rec) === `${n}.ntm` && j.rec.deviceV4 && j.rec.deviceV6) return Promise.resolve({ v4: j.rec.deviceV4, v6: j.rec.deviceV6 });
    }
    return Promise.resolve(undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.trafficTimer);
    // A clean stop leaves no shaping behind (a crash leaves it in force until the next start replaces it).
    await this.qosBackend?.backend.clear().catch((e: Error) => this.o.log.warn('QoS rules could not be removed', { err: e }));
    await this.engine.stop();
    await this.host.close();
    await this.rs?.stop();
    await this.dc.stop();
    this.db.close();
  }
}
