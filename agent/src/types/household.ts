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
}
