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
import { Counters } from '../util/log.js';
import type {
  AgentApi,
  AgentEvent,
  DeviceView,
  EnrollmentView,
  GrantView,
  HealthView,
  PairInput,
  PhoneView,
  TunnelView,
} from '../types/household.js';
import type { Endpoint } from '../types/net.js';
import { NtmError } from '../types/errors.js';
import { openDb, type Db } from '../store/db.js';
import { Identity } from '../protocol/identity.js';
import * as NT from '../protocol/node-transaction.js';
import { toHex } from '../crypto/hex.js';
import { bytesToIp4, bytesToIp6, canonicalIp, ip4ToBytes, ip6ToBytes, ipFamily } from '../protocol/ip.js';
import { formatEndpoint, parseEndpoint } from '../protocol/endpoint.js';
import { DcServer, type DcEvent } from '../dc/server.js';
import { openDcBinds } from '../dc/binds.js';
import { SqliteRegistry } from '../registry/sqlite.js';
import { RsServer } from '../rs/server.js';
import { TerminalHost, type HostEvent } from '../terminal/host.js';
import { HandshakeClock, HANDSHAKE_CLOCK_FILE } from '../terminal/handshake-clock.js';
import type { Node } from '../terminal/node.js';
import { UdpBind } from '../dataplane/conn/udp.js';
import { OverlayFirewall } from '../dataplane/nfqueue/rules.js';
import { openPacketSource } from '../dataplane/nfqueue/open.js';
import { insideHandler } from '../dataplane/inside.js';
import { carrierHandler, outsideDeliver } from '../dataplane/outside.js';
import { Reinjector } from '../dataplane/reinject.js';
import { PROTO_ICMP, PROTO_ICMPV6, type PacketInfo } from '../dataplane/packet/parse.js';
import { rewriteAddress } from '../dataplane/packet/rewrite.js';
import { buildDestinationUnreachable, ICMP4_ERROR_MAX, ICMP6_ERROR_MAX } from '../dataplane/packet/icmp.js';
import type { PacketSource } from '../types/packet-source.js';
import { HouseholdStore } from './household-store.js';
import { makeEnrollment } from './enrollment.js';
import { ntmLabel } from './names.js';
import { be32 } from '../util/bytes.js';

/** ICMP errors the agent may originate: a burst, then this many a second. */
const ICMP_BURST = 10;
const ICMP_PER_S = 10;

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

/** A paired appliance as the data path sees it: addresses as bytes for per-packet lookups. */
interface Paired {
  readonly deviceId: number;
  readonly name: string;
  readonly ntmId: string;
  readonly lan4: Buffer | undefined;
  readonly lan6: Buffer | undefined;
  readonly v4: Buffer;
  readonly v6: Buffer;
  readonly node: Node;
}

/**
 * Data-path outcomes that are not drops: the counters also count what went through (inside.ts, outside.ts) and the
 * ICMP errors the agent answered with (unreachable).
 */
const DELIVERED = new Set(['out-sent', 'out-queued', 'in-delivered', 'icmp-unreachable-sent', 'icmp-unreachable-queued']);

/** The data path's drop counters by reason, without the packets that were sent or delivered. */
function dropsOf(counters: Counters): Record<string, number> {
  return Object.fromEntries(Object.entries(counters.toJSON()).filter(([k]) => !DELIVERED.has(k)));
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
  readonly counters = new Counters();
  private readonly paired = new Map<string, Paired>();
  private readonly byLan4 = new Map<number, Paired>();
  private readonly byLan6 = new Map<string, Paired>();
  /** phone ID → device NTM ID → allowed ports (empty: all). */
  private access = new Map<string, Map<string, readonly number[]>>();
  /** Phones by their virtual addresses (for the LAN → tunnel policy check). */
  private readonly phoneBy4 = new Map<number, string>();
  private readonly phoneBy6 = new Map<string, string>();
  /** Identities being paired right now: the DC admits them before the store has them. */
  private readonly pendingAdmit = new Set<string>();
  private readonly startedAt = Date.now();
  private sources: PacketSource[] = [];
  private firewall: OverlayFirewall | undefined;
  private reinject: Reinjector | undefined;
  private timers: NodeJS.Timeout[] = [];
  private readonly version: string;

  private constructor(
    private readonly o: AgentRuntimeOptions,
    readonly db: Db,
    readonly store: HouseholdStore,
    readonly dc: DcServer,
    readonly rs: RsServer | undefined,
    readonly host: TerminalHost,
    readonly advertise: string[],
  ) {
    try {
      this.version = (JSON.parse(readFileSync(join(import.meta.dirname, '../../../../package.json'), 'utf8')) as { version: string }).version;
    } catch {
      this.version = 'unknown';
    }
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
    const dcConfig = Object.freeze({
      ...o.dc,
      advertise: o.dc.advertise.length > 0 ? o.dc.advertise : advertise.map((a) => ep(a, dcPort)),
      relays: [...o.dc.relays, ...relays.map((r) => ({ id: r.slice(0, r.indexOf('@')), endpoint: parseEndpoint(r.slice(r.indexOf('@') + 1)) }))],
    });
    const dc = await DcServer.start({
      identity: o.dcIdentity,
      db,
      registry: new SqliteRegistry(db),
      ...(await openDcBinds(dcConfig)),
      config: dcConfig,
      log: o.log,
      admit: (id, token) => ref.self?.admit(id, token) ?? false,
      allowDirection: (from, to) => ref.self?.allowDirection(from, to) ?? false,
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
    const bind = await UdpBind.open({ listen: o.agent.listen });
    const locals = (): Endpoint[] => advertise.map((a) => ({ family: ipFamily(a) as 4 | 6, address: a, port: bind.port }));
    const handshakeClock = new HandshakeClock(join(o.agent.dataDir, HANDSHAKE_CLOCK_FILE), o.log);
    const host = new TerminalHost({
      bind,
      locals,
      log: o.log,
      handshakeTime: () => handshakeClock.next(),
      onEvent: (e) => ref.self?.onHostEvent(e),
    });
    const self = new AgentRuntime(o, db, store, dc, rs, host, advertise);
    ref.self = self;
    await self.loadPaired();
    self.reconcile();
    self.refreshAccess();
    if (o.agent.dataplane) await self.startDataplane();
    self.timers.push(setInterval(() => self.refreshPhones(), 2000));
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
        this.index({ deviceId: p.deviceId, name: p.name, ntmId: p.ntmId, lan4: p.ipv4 ?? undefined, lan6: p.ipv6 ?? undefined, v4, v6, node });
      }),
    );
  }

  private index(p: { deviceId: number; name: string; ntmId: string; lan4?: string; lan6?: string; v4: string; v6: string; node: Node }): void {
    const e: Paired = {
      deviceId: p.deviceId,
      name: p.name,
      ntmId: p.ntmId,
      lan4: p.lan4 ? Buffer.from(ip4ToBytes(p.lan4)) : undefined,
      // A link-local address (all the neighbour table may know of an appliance's IPv6) names no interface here, so
      // packets rewritten to it could not be delivered: such a device is reached over IPv4 only.
      lan6: p.lan6 && !/^fe[89ab]/i.test(p.lan6) ? Buffer.from(ip6ToBytes(p.lan6)) : undefined,
      v4: Buffer.from(ip4ToBytes(p.v4)),
      v6: Buffer.from(ip6ToBytes(p.v6)),
      node: p.node,
    };
    this.paired.set(p.ntmId, e);
    if (e.lan4) this.byLan4.set(be32(e.lan4, 0), e);
    if (e.lan6) this.byLan6.set(e.lan6.toString('hex'), e);
  }

  /**
   * Discovery saw paired devices at new LAN addresses (a DHCP lease changed): the data path follows, without touching
   * identities or virtual addresses. Returns how many devices moved.
   */
  async refreshLanAddresses(): Promise<number> {
    let moved = 0;
    for (const p of this.store.pairedIdentities()) {
      const e = this.paired.get(p.ntmId);
      if (!e) continue;
      const lan4 = e.lan4 ? bytesToIp4(e.lan4) : null;
      const lan6 = e.lan6 ? bytesToIp6(e.lan6) : null;
      const want6 = p.ipv6 && !/^fe[89ab]/i.test(p.ipv6) ? canonicalIp(p.ipv6) : null;
      if (lan4 === (p.ipv4 ?? null) && lan6 === want6) continue;
      this.unindex(p.ntmId);
      this.index({
        deviceId: e.deviceId,
        name: e.name,
        ntmId: e.ntmId,
        ...(p.ipv4 ? { lan4: p.ipv4 } : {}),
        ...(p.ipv6 ? { lan6: p.ipv6 } : {}),
        v4: bytesToIp4(e.v4),
        v6: bytesToIp6(e.v6),
        node: e.node,
      });
      moved++;
      this.o.log.info('a paired device moved on the LAN', { device: e.name, from: [lan4, lan6], to: [p.ipv4, p.ipv6] });
    }
    if (moved > 0) await this.firewall?.setPairedSources(this.pairedSources());
    return moved;
  }

  private unindex(ntmId: string): void {
    const e = this.paired.get(ntmId);
    if (!e) return;
    this.paired.delete(ntmId);
    if (e.lan4 && this.byLan4.get(be32(e.lan4, 0)) === e) this.byLan4.delete(be32(e.lan4, 0));
    if (e.lan6 && this.byLan6.get(e.lan6.toString('hex')) === e) this.byLan6.delete(e.lan6.toString('hex'));
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

  private allowDirection(from: string, to: string): boolean {
    const phones = (id: string) => this.access.has(id) || this.store.phones().some((p) => p.id === id);
    if (this.access.get(from)?.has(to) || this.access.get(to)?.has(from)) return true;
    // Two of the family's phones may reach each other; appliances only whom they were granted to.
    return !this.paired.has(from) && !this.paired.has(to) && phones(from) && phones(to);
  }

  private refreshAccess(): void {
    const m = new Map<string, Map<string, readonly number[]>>();
    for (const r of this.store.accessRules()) {
      let inner = m.get(r.phoneId);
      if (!inner) m.set(r.phoneId, (inner = new Map()));
      inner.set(r.deviceNtmId, r.ports);
    }
    this.access = m;
  }

  /** Phones' virtual addresses, from the DC's table (they register there). */
  private refreshPhones(): void {
    this.phoneBy4.clear();
    this.phoneBy6.clear();
    for (const p of this.store.phones()) {
      const rec = this.dc.terminals.byId.get(p.id);
      if (!rec) continue;
      this.phoneBy4.set(be32(ip4ToBytes(rec.v4), 0), p.id);
      this.phoneBy6.set(Buffer.from(ip6ToBytes(rec.v6)).toString('hex'), p.id);
    }
  }

  /** Whether `phone` may exchange this packet with `device`: a grant, and its source or destination port in it. */
  private allowed(phone: string, device: string, info: PacketInfo): boolean {
    const ports = this.access.get(phone)?.get(device);
    if (!ports) return false;
    if (ports.length === 0) return true;
    // ICMP has no ports: echo and errors follow the grant itself.
    if (info.protocol === PROTO_ICMP || info.protocol === PROTO_ICMPV6) return true;
    return ports.includes(info.srcPort) || ports.includes(info.dstPort);
  }

  /** LAN → tunnel: the appliance's LAN source becomes its virtual address, if a granted phone is the destination. */
  private translateOut = (buf: Buffer, info: PacketInfo): string | undefined => {
    const s = info.start;
    const e = info.version === 4 ? this.byLan4.get(be32(buf, s + 12)) : this.byLan6.get(buf.toString('hex', s + 8, s + 24));
    if (!e) return 'not-paired';
    const phone = info.version === 4 ? this.phoneBy4.get(be32(buf, s + 16)) : this.phoneBy6.get(buf.toString('hex', s + 24, s + 40));
    if (!phone) return 'not-a-phone';
    // Replies come from the granted service port; the appliance may also start flows to a granted phone.
    if (!this.allowed(phone, e.ntmId, info)) return 'policy';
    const r = rewriteAddress(buf, info, 'src', info.version === 4 ? e.v4 : e.v6);
    return r.ok ? undefined : `rewrite-${r.reason}`;
  };

  /** Tunnel → LAN: the access policy, then the appliance's virtual destination becomes its LAN address. */
  private translateIn = (inner: Buffer, info: PacketInfo, node: string, peer: string): string | undefined => {
    const e = this.paired.get(node);
    if (!e) return 'not-paired';
    if (!this.allowed(peer, node, info)) return 'policy';
    const lan = info.version === 4 ? e.lan4 : e.lan6;
    if (!lan) {
      this.unreachable(inner, info);
      return 'no-lan-address';
    }
    const r = rewriteAddress(inner, info, 'dst', lan);
    return r.ok ? undefined : `rewrite-${r.reason}`;
  };

  /** ICMP errors the agent originates (RFC 4443 §2.4(f), RFC 1812 §4.3.2.8: rate-limited): a token bucket. */
  private icmpTokens = ICMP_BURST;
  private icmpRefilledAt = 0;

  /**
   * The phone asked an appliance for a family it does not have on the LAN (an IPv4-only lamp at its virtual IPv6
   * address, which the name also resolves to): answer "unreachable" through the tunnel, from that virtual address, so
   * the phone's stack fails the attempt at once and falls back to the other family (RFC 8305) instead of waiting.
   */
  private unreachable(inner: Buffer, info: PacketInfo): void {
    const now = performance.now();
    this.icmpTokens = Math.min(ICMP_BURST, this.icmpTokens + ((now - this.icmpRefilledAt) / 1000) * ICMP_PER_S);
    this.icmpRefilledAt = now;
    if (this.icmpTokens < 1) return this.counters.inc('icmp-unreachable-limited');
    this.icmpTokens--;
    const s = info.start;
    const ours = info.version === 4 ? inner.subarray(s + 16, s + 20) : inner.subarray(s + 24, s + 40);
    const out = Buffer.allocUnsafe(info.version === 4 ? ICMP4_ERROR_MAX : ICMP6_ERROR_MAX);
    const r = buildDestinationUnreachable(inner, info, ours, out);
    if (!r.ok) return this.counters.inc(`icmp-unreachable-${r.reason}`);
    this.counters.inc(`icmp-unreachable-${this.host.sendInner(out.subarray(0, r.length), info.version)}`);
  }

  private pairedSources(): string[] {
    const out: string[] = [];
    for (const e of this.paired.values()) {
      if (e.lan4) out.push(`${bytesToIp4(e.lan4)}/32`);
      if (e.lan6) out.push(`${bytesToIp6(e.lan6)}/128`);
    }
    return out;
  }

  private async startDataplane(): Promise<void> {
    const a = this.o.agent;
    this.reinject = await Reinjector.open();
    this.firewall = new OverlayFirewall({
      chainPrefix: 'NTMA',
      queueIn: a.queueIn,
      queueOut: a.queueOut,
      virtualRanges: [this.o.dc.virtualV4, this.o.dc.virtualV6],
      forward: true,
      pairedSources: this.pairedSources(),
      innerMtu: a.mtu,
      ...(this.reinject.mode === 'carrier' ? { carrierPorts: { 4: this.reinject.port4, 6: this.reinject.port6 } } : {}),
    });
    try {
      const out = openPacketSource({ queue: a.queueOut });
      this.sources.push(out);
      out.onPacket(insideHandler({ overlay: this.host, mtu: a.mtu, translate: this.translateOut, counters: this.counters }));
      if (this.reinject.mode === 'carrier') {
        const inn = openPacketSource({ queue: a.queueIn });
        this.sources.push(inn);
        inn.onPacket(carrierHandler({ reinject: this.reinject, counters: this.counters }));
      }
      this.host.setInnerHandler(outsideDeliver({ reinject: this.reinject, translate: this.translateIn, counters: this.counters }));
      await this.firewall.install();
    } catch (e) {
      await this.stopDataplane();
      throw e;
    }
  }

  private async stopDataplane(): Promise<void> {
    await this.firewall?.remove().catch((e: Error) => this.o.log.error('removing firewall rules failed', { err: e }));
    await Promise.all(this.sources.map((s) => s.close()));
    this.sources = [];
    this.reinject?.close();
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
      this.index({
        deviceId: view.id,
        name: view.name,
        ntmId: identity.idHex,
        ...(view.ipv4 ? { lan4: view.ipv4 } : {}),
        ...(view.ipv6 ? { lan6: view.ipv6 } : {}),
        v4: r.v4,
        v6: r.v6,
        node,
      });
      await this.firewall?.setPairedSources(this.pairedSources());
      this.o.log.info('device paired', { device: view.name, id: identity.idHex, v4: r.v4, v6: r.v6 });
      return view;
    } catch (e) {
      this.host.removeNode(identity.idHex);
      this.dc.revoke(identity.idHex);
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
    this.unindex(ntmId);
    this.host.removeNode(ntmId);
    this.refreshAccess();
    await this.firewall?.setPairedSources(this.pairedSources());
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
    const cut = this.host.dropPeer(p.id);
    this.refreshAccess();
    this.refreshPhones();
    this.o.log.info('phone removed', { phone: p.name, id: p.id, tunnelsCut: cut });
  }

  grants(): GrantView[] {
    return this.store.grants();
  }

  setGrant(phoneId: string, deviceId: number, ports: readonly number[]): void {
    this.store.setGrant(phoneId, deviceId, ports);
    this.refreshAccess();
  }

  revokeGrant(phoneId: string, deviceId: number): void {
    this.store.revokeGrant(phoneId, deviceId);
    this.refreshAccess();
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
      dataplane: { ok: !this.o.agent.dataplane || this.sources.length > 0, drops: dropsOf(this.counters) },
    };
  }

  tunnels(): TunnelView[] {
    const phoneName = new Map(this.store.phones().map((p) => [p.id, p.name]));
    const out: TunnelView[] = [];
    for (const e of this.paired.values()) {
      for (const t of this.host.allTunnels()) {
        if (this.host.tunnelTo(e.node, t.peerId) !== t) continue;
        out.push({
          device: e.name,
          peer: t.peerId,
          peerName: phoneName.get(t.peerId) ?? t.route.peerName,
          path: t.kind,
          state: t.state,
          rttMs: Math.round(t.rttMs * 10) / 10,
          txBytes: t.stats.txBytes,
          rxBytes: t.stats.rxBytes,
        });
      }
    }
    return out;
  }

  events(limit?: number): AgentEvent[] {
    return this.store.events(limit);
  }

  onEvent(listener: (e: AgentEvent) => void): () => void {
    return this.store.onEvent(listener);
  }

  // ---------------------------------------------------------------------------------------------------------------

  private onDcEvent(e: DcEvent): void {
    if (e.kind === 'registered' && e.first) this.refreshPhones();
    if (e.kind === 'direction-refused') this.store.addEvent('access.refused', `${this.describe(e.from)} may not reach ${this.describe(e.target)}: the connection was refused (${e.status})`);
  }

  /** A terminal as the household knows it (a phone's or device's name) from its ID, virtual address or .ntm name. */
  private describe(who: string): string {
    const w = who.toLowerCase().replace(/\.$/, '');
    const label = w.replace(/\.ntm$/, '');
    const phone = this.store.phones().find((p) => p.id === w);
    if (phone) return phone.name;
    for (const e of this.paired.values()) {
      if (e.ntmId === w || bytesToIp4(e.v4) === w || bytesToIp6(e.v6) === w || ntmLabel(e.name, e.ntmId) === label) return e.name;
    }
    return who;
  }

  private onHostEvent(e: HostEvent): void {
    const name = (id: string) => this.paired.get(id)?.name ?? id;
    const phone = (id: string) => this.store.phones().find((p) => p.id === id)?.name ?? id;
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
      dataplane: {
        counters: this.counters.toJSON(),
        reinjected: this.reinject?.counters.toJSON() ?? null,
        queues: this.sources.map((s) => ({ queue: s.queue, ...s.counters })),
      },
      dc: this.dc.status(),
      rs: this.rs?.status() ?? null,
      terminal: this.host.status(),
      endpoints: { dc: this.dc.port, rs: this.rs?.port ?? null, tunnels: this.host.bind.port, wan: this.advertise.map((a) => formatEndpoint({ family: ipFamily(a) as 4 | 6, address: a, port: this.host.bind.port })) },
    };
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    await this.stopDataplane();
    await this.host.close();
    await this.rs?.stop();
    await this.dc.stop();
    this.db.close();
  }
}
