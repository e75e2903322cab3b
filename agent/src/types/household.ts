// The household agent's API as the web UI (and the CLI) see it: devices, phones, access grants, status. Interfaces only.
// Implemented by agent/src/agent/runtime.ts (the real agent) and by fakes in tests; web-ui/server calls only this, and
// the page (web-ui/client/api.ts) reads these same views: type-only, so this file must stay free of values.

import type { QosLink, QosRule, QosView } from './qos.js';

export type DeviceSource = 'mdns' | 'neighbour' | 'manual';

export interface DeviceView {
  /** Stable id of the device in the household store. */
  readonly id: number;
  readonly name: string;
  /** "lamp", "camera", "printer", … from mDNS service types or given by the user; "" when unknown. */
  readonly kind: string;
  readonly mac: string | null;
  readonly ipv4: string | null;
  readonly ipv6: string | null;
  /** Seen on the LAN recently (neighbour table reachable/stale, or an mDNS answer). */
  readonly online: boolean;
  readonly sources: readonly DeviceSource[];
  readonly lastSeen: string | null;
  readonly paired: boolean;
  /** The NTM identity the agent holds for it (when paired). */
  readonly ntmId: string | null;
  readonly virtualV4: string | null;
  readonly virtualV6: string | null;
  /** The name phones reach it by, "<label>.ntm" (when paired): its name as a DNS label (agent/src/agent/names.ts). */
  readonly ntmName: string | null;
}

export interface PairInput {
  /** Pair a discovered device by its id, or describe one by hand (mac and/or address). */
  readonly deviceId?: number;
  readonly name?: string;
  readonly kind?: string;
  readonly mac?: string;
  readonly ipv4?: string;
  readonly ipv6?: string;
}

export interface PhoneView {
  /** The phone's NTM ID. */
  readonly id: string;
  readonly name: string;
  readonly enrolledAt: string;
  readonly online: boolean;
  readonly virtualV4: string | null;
}

export interface EnrollmentView {
  /** The one-time token (what `ntm enroll` takes), also as a link and a QR code (SVG markup). */
  readonly token: string;
  readonly link: string;
  readonly qrSvg: string;
  readonly expiresAt: string;
  readonly name: string;
}

export interface GrantView {
  readonly phoneId: string;
  readonly deviceId: number;
  /** Allowed destination ports on the device; empty = all ports. */
  readonly ports: readonly number[];
}

export interface TunnelView {
  readonly device: string;
  readonly peer: string;
  readonly peerName: string;
  readonly path: string;
  readonly state: string;
  readonly rttMs: number;
  readonly txBytes: number;
  readonly rxBytes: number;
}

export interface HealthView {
  readonly agent: { readonly ok: boolean; readonly uptimeS: number; readonly version: string };
  readonly dc: { readonly ok: boolean; readonly id: string; readonly terminals: number; readonly online: number };
  readonly rs: { readonly ok: boolean; readonly id: string; readonly tunnels: number };
  readonly dataplane: { readonly ok: boolean; readonly drops: Readonly<Record<string, number>> };
}

/** GET /api/status: the health and the live tunnels, in one answer. */
export interface StatusView {
  readonly health: HealthView;
  readonly tunnels: readonly TunnelView[];
}

/**
 * GET /api/traffic: what each connection (a paired device and a phone) carried in each step of the last minutes, for
 * the status page's live charts. Every series has `points` entries, oldest first, the last one ending at `end`;
 * steps before the connection existed are 0. Sent and received are the agent's (the device's side): "sent" went to
 * the phone.
 */
export interface TrafficView {
  readonly stepS: number;
  readonly points: number;
  /** When the last step ended; null before the first step is taken. */
  readonly end: string | null;
  readonly connections: readonly TrafficSeriesView[];
}

export interface TrafficSeriesView {
  readonly device: string;
  /** The phone's NTM ID, as TunnelView.peer. */
  readonly peer: string;
  readonly peerName: string;
  /** Whether a tunnel of this connection is there now (a closed one stays until its traffic leaves the window). */
  readonly connected: boolean;
  readonly txBytes: readonly number[];
  readonly rxBytes: readonly number[];
  readonly txPackets: readonly number[];
  readonly rxPackets: readonly number[];
}

export interface AgentEvent {
  readonly at: string;
  readonly kind: string;
  readonly message: string;
}

/** A device of this household shared with another household (issue 13): that household's agent is its peer. */
export interface ShareView {
  /** The other household's identity at this household's DC (what revokeShare takes). */
  readonly peerId: string;
  /** The other household, as this household named it in the invitation. */
  readonly household: string;
  readonly deviceId: number;
  readonly device: string;
  /** Ports it may use (empty: all). */
  readonly ports: readonly number[];
  readonly since: string;
  /** Its agent is registered with this household's DC now. */
  readonly online: boolean;
}

/** A pending invitation to share a device: what the other household's owner pastes into their page. */
export interface ShareInviteView {
  readonly code: string;
  readonly link: string;
  readonly expiresAt: string;
  readonly household: string;
  readonly deviceId: number;
  readonly ports: readonly number[];
}

/** A device another household shared with this one, and which of this household's devices may use it. */
export interface RemoteShareView {
  readonly id: number;
  readonly household: string;
  readonly device: string;
  /** How this household's LAN reaches it: "<device>.<household>.ntm" on the agent's LAN DNS, and its virtual addresses. */
  readonly name: string;
  readonly virtualV4: string | null;
  readonly virtualV6: string | null;
  /** Device ids of this household that may use it. */
  readonly users: readonly number[];
  /** Registered with the sharing household's DC now. */
  readonly online: boolean;
  readonly acceptedAt: string;
}

export interface AgentApi {
  devices(): DeviceView[];
  pair(input: PairInput): Promise<DeviceView>;
  unpair(deviceId: number): Promise<void>;
  phones(): PhoneView[];
  /** A new one-time enrollment for a phone called `name`. */
  createEnrollment(name: string): EnrollmentView;
  removePhone(phoneId: string): Promise<void>;
  grants(): GrantView[];
  setGrant(phoneId: string, deviceId: number, ports: readonly number[]): void;
  revokeGrant(phoneId: string, deviceId: number): void;
  health(): HealthView;
  tunnels(): TunnelView[];
  /** The per-connection traffic history the status page charts. */
  traffic(): TrafficView;
  events(limit?: number): AgentEvent[];
  /** Live events for the page (server-sent events); returns the unsubscribe function. */
  onEvent(listener: (e: AgentEvent) => void): () => void;
  /** QoS (paper §3.2.1): the rules, the link, and whether enforcement holds them. */
  qos(): QosView;
  /** Sets (rule) or removes (null) a paired device's or a phone's rule, and enforces the whole new plan. */
  setQosRule(target: { readonly deviceId: number } | { readonly phoneId: string }, rule: QosRule | null): Promise<QosView>;
  setQosLink(link: QosLink): Promise<QosView>;
  /** Devices shared with other households (issue 13, paper §3.2.2): who, which device, which ports. */
  shares(): ShareView[];
  /** An invitation for another household (as this one calls it) to use a paired device on `ports` (empty: all). */
  createShareInvite(deviceId: number, household: string, ports: readonly number[]): ShareInviteView;
  /** Ends a share: the other household's agent is no longer admitted and its tunnels are cut now. */
  revokeShare(peerId: string): Promise<void>;
  /** Devices other households shared with this one. */
  remoteShares(): RemoteShareView[];
  /** Accepts an invitation (code or link) and lets these devices of this household use it. */
  acceptShare(code: string, users: readonly number[]): Promise<RemoteShareView>;
  setRemoteShareUsers(id: number, users: readonly number[]): RemoteShareView;
  /** Stops using a shared device (its identity at the other household's DC is dropped). */
  removeRemoteShare(id: number): Promise<void>;
}
