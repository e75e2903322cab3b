// The page's calls to the agent: one function per API operation (the operations of /api/openapi.json; a unit test
// checks that every path used here is documented there). Same-origin fetch, JSON, the CSRF header on changes.
import type { AgentEvent, DeviceView, EnrollmentView, GrantView, PhoneView, RemoteShareView, ShareInviteView, ShareView, StatusView, TrafficView } from '../../agent/src/types/household.js';
import type { QosRule, QosView } from '../../agent/src/types/qos.js';

/** How this page reached the agent, and the fingerprint of the agent's HTTPS certificate (web-only, no agent view). */
export interface Connection {
  tls: boolean;
  fingerprint: string | null;
}

export interface Session {
  authenticated: boolean;
  setupRequired: boolean;
  csrfToken: string | null;
  household: string | null;
}

/** The view types are the agent's own (one definition, agent/src/types/household.ts); type-only, so nothing of it is loaded. */
export type {
  AgentEvent,
  DeviceView as Device,
  EnrollmentView as Enrollment,
  GrantView as Grant,
  HealthView as Health,
  PhoneView as Phone,
  RemoteShareView as RemoteShare,
  ShareInviteView as ShareInvite,
  ShareView as Share,
  StatusView as Status,
  TrafficView as Traffic,
  TunnelView as Tunnel,
} from '../../agent/src/types/household.js';
export type { QosView as Qos } from '../../agent/src/types/qos.js';

/** An error answer of the API: `message` is written for people; `field` names the input at fault. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

let csrfToken: string | null = null;

export function setCsrfToken(t: string | null): void {
  csrfToken = t;
}

async function call<T>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  let r: Response;
  try {
    r = await fetch(path, { method, headers, body: body === undefined ? null : JSON.stringify(body), credentials: 'same-origin', cache: 'no-store' });
  } catch {
    throw new ApiError(0, 'network', 'the agent cannot be reached; check the connection and try again');
  }
  if (r.status === 204) return undefined as T;
  let data: unknown = null;
  try {
    data = await r.json();
  } catch {
    // A non-JSON answer (a proxy's error page): handled below by status.
  }
  if (!r.ok) {
    const e = (data ?? {}) as { error?: string; message?: string; field?: string };
    throw new ApiError(r.status, e.error ?? `http_${r.status}`, e.message ?? `the agent answered ${r.status}`, e.field);
  }
  return data as T;
}

const enc = encodeURIComponent;

export const api = {
  session: () => call<Session>('GET', '/api/session'),
  setup: (setupCode: string, password: string, household: string) => call<Session>('POST', '/api/setup', { setupCode, password, household }),
  login: (password: string) => call<Session>('POST', '/api/login', { password }),
  logout: () => call<void>('POST', '/api/logout'),
  changePassword: (currentPassword: string, newPassword: string) => call<void>('POST', '/api/password', { currentPassword, newPassword }),
  household: () => call<{ name: string }>('GET', '/api/household'),
  connection: () => call<Connection>('GET', '/api/connection'),
  setHousehold: (name: string) => call<{ name: string }>('PUT', '/api/household', { name }),
  devices: () => call<DeviceView[]>('GET', '/api/devices'),
  addDevice: (d: { name: string; kind?: string; mac?: string; ipv4?: string; ipv6?: string }) => call<DeviceView>('POST', '/api/devices', d),
  pair: (deviceId: number, body: { name?: string }) => call<DeviceView>('POST', `/api/devices/${deviceId}/pairing`, body),
  unpair: (deviceId: number) => call<void>('DELETE', `/api/devices/${deviceId}/pairing`),
  phones: () => call<PhoneView[]>('GET', '/api/phones'),
  removePhone: (phoneId: string) => call<void>('DELETE', `/api/phones/${enc(phoneId)}`),
  createEnrollment: (name: string) => call<EnrollmentView>('POST', '/api/enrollments', { name }),
  grants: () => call<GrantView[]>('GET', '/api/grants'),
  setGrant: (phoneId: string, deviceId: number, ports: number[]) => call<GrantView>('PUT', `/api/grants/${enc(phoneId)}/${deviceId}`, { ports }),
  revokeGrant: (phoneId: string, deviceId: number) => call<void>('DELETE', `/api/grants/${enc(phoneId)}/${deviceId}`),
  status: () => call<StatusView>('GET', '/api/status'),
  traffic: () => call<TrafficView>('GET', '/api/traffic'),
  qos: () => call<QosView>('GET', '/api/qos'),
  setDeviceQos: (deviceId: number, rule: QosRule) => call<QosView>('PUT', `/api/qos/devices/${deviceId}`, rule),
  clearDeviceQos: (deviceId: number) => call<QosView>('DELETE', `/api/qos/devices/${deviceId}`),
  shares: () => call<ShareView[]>('GET', '/api/shares'),
  createShareInvite: (deviceId: number, household: string, ports: number[]) => call<ShareInviteView>('POST', '/api/shares', { deviceId, household, ports }),
  revokeShare: (peerId: string) => call<void>('DELETE', `/api/shares/${enc(peerId)}`),
  remoteShares: () => call<RemoteShareView[]>('GET', '/api/remote-shares'),
  acceptShare: (code: string, users: number[]) => call<RemoteShareView>('POST', '/api/remote-shares', { code, users }),
  setRemoteShareUsers: (id: number, users: number[]) => call<RemoteShareView>('PUT', `/api/remote-shares/${id}`, { users }),
  removeRemoteShare: (id: number) => call<void>('DELETE', `/api/remote-shares/${id}`),
  events: (limit: number) => call<AgentEvent[]>('GET', `/api/events?limit=${limit}`),
};

/** The live-update stream's URL (server-sent events). */
export const LIVE_URL = '/api/live';
