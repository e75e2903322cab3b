// An AgentApi over the real HouseholdStore with the runtime's effects faked: identities are real key pairs, but
// nothing registers with a DC; virtual addresses are deterministic; tunnels, phones' online state and health live
// in memory and are set by the test. For unit and browser tests of the web layer (and a UI demo without packets).
import { KeyPair } from '../crypto/secp256k1.js';
import type { DiscoveredDevice } from '../discovery/types.js';
import { ConflictError, HouseholdFullError, InputError, NotFoundError } from '../types/errors.js';
import { formatEndpoint } from '../protocol/endpoint.js';
import { decodeShareInvite, encodeShareInvite, shareLink } from './share-invite.js';
import { nameLabel, ntmLabel } from './names.js';
import type { RemoteShareRecord } from './household-store.js';
import type { Endpoint } from '../types/net.js';
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
import type { QosLink, QosRule, QosView } from '../types/qos.js';
import { decodeEnrollment, makeEnrollment } from './enrollment.js';
import type { HouseholdStore } from './household-store.js';
import { TrafficHistory } from './traffic-history.js';

export interface FakeAgentOptions {
  readonly store: HouseholdStore;
  /** Where phones are told to reach the DC; default 198.51.100.2:7100 (the household testbed's vCPE WAN). */
  readonly dcEndpoints?: readonly Endpoint[];
  /** Lifetime of enrollment tokens (s); default 900 (agent.enrollTtlS). */
  readonly enrollTtlS?: number;
  readonly now?: () => number;
  readonly version?: string;
  /** Delay of pair(), as registration with the DC would take (ms); default 0. */
  readonly pairDelayMs?: number;
  /** Step of the traffic history (ms); default 5000. Steps are taken when the test calls sampleTraffic(). */
  readonly trafficStepMs?: number;
}

export interface FakeTunnelInput {
  /** The paired device's id. */
  readonly deviceId: number;
  readonly phoneId: string;
  readonly path?: 'direct' | 'hole-punched' | 'relayed';
  readonly rttMs?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class FakeAgent implements AgentApi {
  readonly store: HouseholdStore;
  /** The fake DC's identity: real, so enrollment tokens carry a valid key. */
  readonly dc: KeyPair = KeyPair.generate();
  readonly rs: KeyPair = KeyPair.generate();
  private readonly now: () => number;
  private readonly startedAt: number;
  private readonly online = new Set<string>();
  private readonly phoneV4 = new Map<string, string>();
  /** `epoch`: which tunnel this is (a reopened one is a new object, as the real agent's new Tunnel would be). */
  private tunnelList: (TunnelView & { deviceId: number; phoneId: string; epoch: object; txPackets: number; rxPackets: number })[] = [];
  private readonly trafficHistory: TrafficHistory;
  private drops: Record<string, number> = {};
  private healthPatch: { agent?: boolean; dc?: boolean; rs?: boolean; dataplane?: boolean } = {};
  /** Devices and phones the fake DC's pool holds (the runtime's is the DC's); undefined: no limit. */
  capacity: number | undefined;

  constructor(private readonly opts: FakeAgentOptions) {
    this.store = opts.store;
    this.now = opts.now ?? Date.now;
    this.startedAt = this.now();
    this.trafficHistory = new TrafficHistory({ stepMs: opts.trafficStepMs ?? 5000 });
  }

  // --- AgentApi -------------------------------------------------------------------------------------------------

  devices(): DeviceView[] {
    return this.store.devices();
  }

  async pair(input: PairInput): Promise<DeviceView> {
    // Validate first, as the runtime does: a refused request must not cost an identity or a registration.
    this.store.resolvePair(input);
    if (this.opts.pairDelayMs) await sleep(this.opts.pairDelayMs);
    if (this.capacity !== undefined && this.store.devices().filter((d) => d.paired).length + this.store.phones().length >= this.capacity) throw new HouseholdFullError(this.capacity);
    const key = KeyPair.generate();
    const n = this.freeHostNumber();
    const priv = key.exportPrivateKey();
    try {
      return this.store.pair(input, {
        privateKeyHex: priv.toString('hex'),
        ntmId: key.idHex,
        virtualV4: `198.18.0.${n}`,
        virtualV6: `fd4e:544d:0:1::${n.toString(16)}`,
      });
    } finally {
      priv.fill(0);
      key.destroy();
    }
  }

  async unpair(deviceId: number): Promise<void> {
    this.store.unpair(deviceId);
    this.tunnelList = this.tunnelList.filter((t) => t.deviceId !== deviceId);
    return Promise.resolve();
  }

  phones(): PhoneView[] {
    return this.store.phones().map((p) => ({ ...p, online: this.online.has(p.id), virtualV4: this.phoneV4.get(p.id) ?? null }));
  }

  createEnrollment(name: string): EnrollmentView {
    const e = makeEnrollment({
      dcPublicKey: this.dc.publicKey,
      dcEndpoints: this.opts.dcEndpoints ?? [{ family: 4, address: '198.51.100.2', port: 7100 }],
      household: this.store.householdName(),
      ttlMs: (this.opts.enrollTtlS ?? 900) * 1000,
      now: this.now(),
    });
    const stored = this.store.createEnrollment(name, e.secret, e.expiresAt);
    return { token: e.token, link: e.link, qrSvg: e.qrSvg, expiresAt: stored.expiresAt, name: stored.name };
  }

  // --- shares between households (issue 13): the store's, with the other household's agent faked ----------------

  shares(): ShareView[] {
    const households = new Map(this.store.households().map((h) => [h.id, h] as const));
    return this.store.accessRules().flatMap((g) => {
      const h = households.get(g.phoneId);
      return h ? [{ peerId: h.id, household: h.name, deviceId: g.deviceId, device: this.store.device(g.deviceId).name, ports: g.ports, since: h.enrolledAt, online: this.online.has(h.id) }] : [];
    });
  }

  createShareInvite(deviceId: number, household: string, ports: readonly number[]): ShareInviteView {
    const dev = this.store.device(deviceId);
    if (!dev.paired || !dev.ntmId) throw new ConflictError(`${dev.name || 'this device'} is not paired; pair it first`);
    const e = makeEnrollment({
      dcPublicKey: this.dc.publicKey,
      dcEndpoints: this.opts.dcEndpoints ?? [{ family: 4, address: '198.51.100.2', port: 7100 }],
      household: this.store.householdName(),
      ttlMs: 2 * 86400_000,
      now: this.now(),
    });
    const stored = this.store.createEnrollment(household, e.secret, e.expiresAt, { deviceId, ports });
    const code = encodeShareInvite(ntmLabel(dev.name, dev.ntmId), e.token);
    return { code, link: shareLink(code), expiresAt: stored.expiresAt, household: stored.name, deviceId, ports: [...new Set(ports)].sort((a, b) => a - b) };
  }

  async revokeShare(peerId: string): Promise<void> {
    if (!this.store.households().some((h) => h.id === peerId.toLowerCase())) throw new NotFoundError(`no household shares a device as ${peerId}`);
    return this.removePhone(peerId);
  }

  private remoteView(r: RemoteShareRecord): RemoteShareView {
    return {
      id: r.id,
      household: r.household,
      device: r.device,
      name: `${r.device}.${nameLabel(r.household) ?? 'home'}.ntm`,
      virtualV4: r.deviceV4,
      virtualV6: r.deviceV6,
      users: r.users,
      online: true,
      acceptedAt: r.acceptedAt,
    };
  }

  remoteShares(): RemoteShareView[] {
    return this.store.remoteShares.list().map((r) => this.remoteView(r));
  }

  async acceptShare(code: string, users: readonly number[]): Promise<RemoteShareView> {
    const d = decodeShareInvite(code, { now: this.now() });
    if (!d.ok) throw new InputError(d.message, 'code');
    const key = KeyPair.generate();
    const priv = key.exportPrivateKey();
    try {
      const r = this.store.remoteShares.add({
        household: d.invite.token.household,
        device: d.invite.device,
        dcPublicKey: d.invite.token.dcPublicKey,
        dcEndpoints: d.invite.token.dcEndpoints.map((e) => formatEndpoint(e)),
        secret: d.invite.token.secret,
        privateKeyHex: priv.toString('hex'),
        ntmId: key.idHex,
        users,
      });
      this.store.remoteShares.setDeviceAddresses(r.id, `198.18.9.${r.id}`, `fd4e:544d:0:9::${r.id}`);
      return Promise.resolve(this.remoteView(this.store.remoteShares.get(r.id)));
    } finally {
      priv.fill(0);
      key.destroy();
    }
  }

  setRemoteShareUsers(id: number, users: readonly number[]): RemoteShareView {
    return this.remoteView(this.store.remoteShares.setUsers(id, users));
  }

  async removeRemoteShare(id: number): Promise<void> {
    this.store.remoteShares.remove(id);
    return Promise.resolve();
  }

  async removePhone(phoneId: string): Promise<void> {
    const p = this.store.removePhone(phoneId);
    this.online.delete(p.id);
    this.tunnelList = this.tunnelList.filter((t) => t.phoneId !== p.id);
    return Promise.resolve();
  }

  grants(): GrantView[] {
    return this.store.grants();
  }

  setGrant(phoneId: string, deviceId: number, ports: readonly number[]): void {
    this.store.setGrant(phoneId, deviceId, ports);
  }

  revokeGrant(phoneId: string, deviceId: number): void {
    this.store.revokeGrant(phoneId, deviceId);
    this.tunnelList = this.tunnelList.filter((t) => !(t.phoneId === phoneId.toLowerCase() && t.deviceId === deviceId));
  }

  health(): HealthView {
    const paired = this.store.pairedIdentities().length;
    const phones = this.store.phones();
    const onlinePhones = phones.filter((p) => this.online.has(p.id)).length;
    return {
      agent: { ok: this.healthPatch.agent ?? true, uptimeS: Math.floor((this.now() - this.startedAt) / 1000), version: this.opts.version ?? '0.1.0-fake' },
      dc: { ok: this.healthPatch.dc ?? true, id: this.dc.idHex, terminals: paired + phones.length, online: paired + onlinePhones },
      rs: { ok: this.healthPatch.rs ?? true, id: this.rs.idHex, tunnels: this.tunnelList.filter((t) => t.path === 'relayed').length },
      dataplane: { ok: this.healthPatch.dataplane ?? true, drops: { ...this.drops } },
    };
  }

  tunnels(): TunnelView[] {
    return this.tunnelList.map(({ deviceId: _d, phoneId: _p, epoch: _e, txPackets: _tp, rxPackets: _rp, ...t }) => t);
  }

  traffic(): TrafficView {
    return this.trafficHistory.view();
  }

  events(limit?: number): AgentEvent[] {
    return this.store.events(limit);
  }

  onEvent(listener: (e: AgentEvent) => void): () => void {
    return this.store.onEvent(listener);
  }

  /** The rules as stored; nothing is enforced (no kernel here). */
  qos(): QosView {
    return { link: this.store.qos.link(), ...this.store.qos.rules(), enforcement: { backend: 'none (fake agent)', applied: false, error: null } };
  }

  setQosRule(target: { readonly deviceId: number } | { readonly phoneId: string }, rule: QosRule | null): Promise<QosView> {
    if ('deviceId' in target) this.store.qos.setDeviceRule(target.deviceId, rule);
    else this.store.qos.setPhoneRule(target.phoneId, rule);
    return Promise.resolve(this.qos());
  }

  setQosLink(link: QosLink): Promise<QosView> {
    this.store.qos.setLink(link);
    return Promise.resolve(this.qos());
  }

  // --- what tests drive -----------------------------------------------------------------------------------------

  /** Discovery found these (as LanDiscovery's snapshot would say). */
  discover(found: readonly DiscoveredDevice[]): void {
    this.store.applyDiscovery(found);
  }

  /**
   * What `ntm enroll <token>` on a phone leads to: the token is decoded as the phone would, and the DC admits the
   * phone with its secret. Returns the phone, or null when the DC would refuse (used, expired, unknown).
   */
  enrollPhone(tokenOrLink: string, phoneId: string = KeyPair.generate().idHex, opts: { online?: boolean } = {}): PhoneView | null {
    const d = decodeEnrollment(tokenOrLink, { now: this.now() });
    if (!d.ok) return null;
    const p = this.store.consumeEnrollment(d.token.secret, phoneId);
    if (!p) return null;
    if (!this.phoneV4.has(p.id)) this.phoneV4.set(p.id, `198.18.0.${this.freeHostNumber(true)}`);
    if (opts.online !== false) this.online.add(p.id);
    return this.phones().find((x) => x.id === p.id) ?? null;
  }

  setPhoneOnline(phoneId: string, online: boolean): void {
    if (online) this.online.add(phoneId.toLowerCase());
    else this.online.delete(phoneId.toLowerCase());
  }

  /** A phone opened a tunnel to a paired device (the real agent learns this from the data path). */
  openTunnel(t: FakeTunnelInput): TunnelView {
    const device = this.store.device(t.deviceId);
    if (!device.paired) throw new NotFoundError(`device ${t.deviceId} is not paired`);
    const phone = this.store.phone(t.phoneId);
    const view = {
      deviceId: device.id,
      phoneId: phone.id,
      device: device.name,
      peer: phone.id,
      peerName: phone.name,
      path: t.path ?? 'direct',
      state: 'up',
      rttMs: t.rttMs ?? 12,
      txBytes: 0,
      rxBytes: 0,
      txPackets: 0,
      rxPackets: 0,
      epoch: {},
    };
    this.tunnelList = [...this.tunnelList.filter((x) => !(x.deviceId === view.deviceId && x.phoneId === view.phoneId)), view];
    this.store.addEvent('tunnel.up', `${phone.name} connected to ${device.name} (${view.path})`);
    return this.tunnels().at(-1)!;
  }

  closeTunnel(deviceId: number, phoneId: string): void {
    const before = this.tunnelList.length;
    this.tunnelList = this.tunnelList.filter((x) => !(x.deviceId === deviceId && x.phoneId === phoneId.toLowerCase()));
    if (this.tunnelList.length !== before) this.store.addEvent('tunnel.down', `A tunnel to device ${deviceId} closed`);
  }

  /** Traffic flowed: every tunnel's byte counters grow (and RTTs wobble), as the data path would report. */
  tick(bytes = 1500): void {
    const packets = Math.ceil(bytes / 1400);
    this.tunnelList = this.tunnelList.map((t, i) => ({
      ...t,
      txBytes: t.txBytes + bytes,
      rxBytes: t.rxBytes + 2 * bytes,
      txPackets: t.txPackets + packets,
      rxPackets: t.rxPackets + 2 * packets,
      rttMs: t.rttMs + ((i % 2) * 2 - 1),
    }));
  }

  /** A step of the traffic history ends now (the real agent takes one every 5 s on a timer). */
  sampleTraffic(at = this.now()): void {
    this.trafficHistory.sample(
      at,
      this.tunnelList.map((t) => ({ ...t, key: `${t.deviceId}/${t.phoneId}`, tunnel: t.epoch })),
    );
  }

  setHealth(patch: { agent?: boolean; dc?: boolean; rs?: boolean; dataplane?: boolean }, drops?: Record<string, number>): void {
    this.healthPatch = { ...this.healthPatch, ...patch };
    if (drops) this.drops = { ...drops };
  }

  /** The lowest host number in 198.18.0.0/24 not used by a paired device or a phone (from 2: .1 is the DC). */
  private freeHostNumber(forPhone = false): number {
    const used = new Set<number>();
    for (const p of this.store.pairedIdentities()) if (p.virtualV4) used.add(Number(p.virtualV4.split('.')[3]));
    for (const v of this.phoneV4.values()) used.add(Number(v.split('.')[3]));
    for (let n = forPhone ? 200 : 2; n < 255; n++) if (!used.has(n)) return n;
    throw new RangeError('the fake pool is exhausted');
  }
}
