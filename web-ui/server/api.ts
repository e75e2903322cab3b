// The route table of /api: every operation with its schemas (for openapi.ts and request validation) and its
// handler over the AgentApi. app.ts registers exactly these and nothing else, so the OpenAPI document lists every
// route by construction.
import type Koa from 'koa';
import { ConflictError, NotFoundError } from '../../agent/src/types/errors.js';
import type { AgentApi, PairInput } from '../../agent/src/types/household.js';
import type { QosLink, QosRule } from '../../agent/src/types/qos.js';
import type { OwnerStore } from '../../agent/src/types/owner.js';
import { checkPasswordPolicy, hashPassword, type LoginLimiter, type Session, type Sessions, setupCodeMatches, verifyPassword } from './auth.js';
import { SetupUnavailableError, TooManyStreamsError, WrongPasswordError, WrongSetupCodeError } from './errors.js';
import type { LiveHub } from './live.js';
import { type OperationSpec, PATTERNS } from './openapi.js';
import { sessionCookie } from './security.js';

/** One call as a handler sees it: validated body and parameters, the session (null on public operations). */
export interface Call {
  readonly ctx: Koa.Context;
  readonly body: unknown;
  readonly params: Readonly<Record<string, string>>;
  readonly query: Readonly<Record<string, string>>;
  readonly session: Session | null;
  /** The rate-limit key of the client (its address or IPv6 /64). */
  readonly client: string;
  readonly tls: boolean;
}

export interface Reply {
  readonly status?: number;
  readonly body?: unknown;
}

export interface Operation extends OperationSpec {
  readonly handler: (c: Call) => Reply | Promise<Reply>;
}

export interface ApiDeps {
  readonly api: AgentApi;
  readonly store: OwnerStore;
  readonly sessions: Sessions;
  readonly limiter: LoginLimiter;
  readonly live: LiveHub;
  readonly setupCode: () => string | null;
  readonly onSetupComplete: () => void;
  readonly openapi: () => unknown;
  /** SHA-256 fingerprint of the HTTPS certificate, or null when the page has none. */
  readonly certificateFingerprint: string | null;
}

const deviceIdParam = { name: 'deviceId', in: 'path', required: true, schema: { type: 'string', pattern: PATTERNS.deviceId } } as const;
const shareIdParam = { name: 'shareId', in: 'path', required: true, schema: { type: 'string', pattern: PATTERNS.deviceId }, description: 'an accepted share' } as const;
const phoneIdParam = { name: 'phoneId', in: 'path', required: true, schema: { type: 'string', pattern: PATTERNS.ntmId }, description: "the phone's NTM ID" } as const;

export function operations(d: ApiDeps): Operation[] {
  const { api, store, sessions, limiter } = d;

  const sessionView = (s: Session | null): Record<string, unknown> => ({
    authenticated: s !== null,
    setupRequired: !store.hasOwner(),
    csrfToken: s?.csrf ?? null,
    household: s ? store.householdName() : null,
  });

  const startSession = (c: Call, status: number): Reply => {
    const { id, session } = sessions.create();
    c.ctx.append('Set-Cookie', sessionCookie(id, c.tls, Math.floor(sessions.policy.absoluteMs / 1000)));
    return { status, body: sessionView(session) };
  };

  return [
    {
      id: 'getOpenApi',
      method: 'get',
      path: '/api/openapi.json',
      summary: 'This document',
      auth: 'public',
      status: 200,
      response: 'openapi',
      errors: [],
      handler: () => ({ body: d.openapi() }),
    },
    {
      id: 'getSession',
      method: 'get',
      path: '/api/session',
      summary: 'Whether this browser is signed in, whether first-start setup is needed, and the CSRF token',
      auth: 'public',
      status: 200,
      response: 'Session',
      errors: [],
      handler: (c) => ({ body: sessionView(c.session) }),
    },
    {
      id: 'setup',
      method: 'post',
      path: '/api/setup',
      summary: "First start: set the owner's password, proving presence with the one-time setup code",
      description: 'Counts towards the sign-in rate limit. Refused once a password is set (409).',
      auth: 'public',
      body: 'SetupRequest',
      status: 201,
      response: 'Session',
      errors: [403, 409, 429, 503],
      handler: async (c) => {
        const b = c.body as { setupCode: string; password: string; household?: string };
        if (store.hasOwner()) throw new ConflictError("the owner's password is already set; sign in instead");
        const code = d.setupCode();
        if (code === null) throw new SetupUnavailableError();
        limiter.check(c.client);
        const withdraw = limiter.attempt(c.client);
        if (!setupCodeMatches(b.setupCode, code)) throw new WrongSetupCodeError();
        withdraw();
        checkPasswordPolicy(b.password);
        // The store checks the household's name (InputError, field "household") before it writes anything.
        store.setupOwner(await hashPassword(b.password), b.household);
        d.onSetupComplete();
        return startSession(c, 201);
      },
    },
    {
      id: 'login',
      method: 'post',
      path: '/api/login',
      summary: 'Sign in with the owner’s password',
      description: 'The 11th wrong password within a minute from one client (IPv4 address or IPv6 /64) is refused with 429.',
      auth: 'public',
      body: 'LoginRequest',
      status: 200,
      response: 'Session',
      errors: [401, 409, 429],
      handler: async (c) => {
        const b = c.body as { password: string };
        const hash = store.ownerPasswordHash();
        if (hash === null) throw new ConflictError('no password is set yet: use the setup code first');
        limiter.check(c.client);
        const withdraw = limiter.attempt(c.client);
        if (!(await verifyPassword(b.password, hash))) throw new WrongPasswordError();
        withdraw();
        return startSession(c, 200);
      },
    },
    {
      id: 'logout',
      method: 'post',
      path: '/api/logout',
      summary: 'Sign out (ends this session)',
      auth: 'session',
      status: 204,
      errors: [],
      handler: (c) => {
        sessions.end(c.session!.idHash);
        c.ctx.append('Set-Cookie', sessionCookie(null, c.tls, 0));
        return { status: 204 };
      },
    },
    {
      id: 'changePassword',
      method: 'post',
      path: '/api/password',
      summary: "Change the owner's password (ends every other session)",
      auth: 'session',
      body: 'PasswordChange',
      status: 204,
      errors: [429],
      handler: async (c) => {
        const b = c.body as { currentPassword: string; newPassword: string };
        limiter.check(c.client);
        const withdraw = limiter.attempt(c.client);
        if (!(await verifyPassword(b.currentPassword, store.ownerPasswordHash() ?? ''))) throw new WrongPasswordError('currentPassword');
        withdraw();
        checkPasswordPolicy(b.newPassword, 'newPassword');
        store.changeOwnerPassword(await hashPassword(b.newPassword), c.session!.idHash);
        return { status: 204 };
      },
    },
    {
      id: 'getHousehold',
      method: 'get',
      path: '/api/household',
      summary: "The household's name (shown on phones that join)",
      auth: 'session',
      status: 200,
      response: 'Household',
      errors: [],
      handler: () => ({ body: { name: store.householdName() } }),
    },
    {
      id: 'getConnection',
      method: 'get',
      path: '/api/connection',
      summary: "Whether this page came over HTTPS, and the fingerprint of the agent's certificate (Settings shows it)",
      auth: 'session',
      status: 200,
      response: 'Connection',
      errors: [],
      handler: (c) => ({ body: { tls: c.tls, fingerprint: d.certificateFingerprint } }),
    },
    {
      id: 'setHousehold',
      method: 'put',
      path: '/api/household',
      summary: "Rename the household",
      auth: 'session',
      body: 'Household',
      status: 200,
      response: 'Household',
      errors: [],
      handler: (c) => ({ body: { name: store.setHouseholdName((c.body as { name: string }).name) } }),
    },
    {
      id: 'listDevices',
      method: 'get',
      path: '/api/devices',
      summary: 'Devices on the LAN (discovered) and paired ones',
      auth: 'session',
      status: 200,
      response: { list: 'Device' },
      errors: [],
      handler: () => ({ body: api.devices() }),
    },
    {
      id: 'addDevice',
      method: 'post',
      path: '/api/devices',
      summary: 'Pair a device described by hand (name and MAC and/or address)',
      auth: 'session',
      body: 'ManualDevice',
      status: 201,
      response: 'Device',
      errors: [409, 502, 504],
      handler: async (c) => {
        const b = c.body as PairInput;
        return { status: 201, body: await api.pair({ name: b.name, kind: b.kind, mac: b.mac, ipv4: b.ipv4, ipv6: b.ipv6 }) };
      },
    },
    {
      id: 'pairDevice',
      method: 'post',
      path: '/api/devices/{deviceId}/pairing',
      summary: 'Pair a discovered device: the agent creates an NTM identity for it',
      auth: 'session',
      params: [deviceIdParam],
      body: 'PairRequest',
      status: 201,
      response: 'Device',
      errors: [404, 409, 502, 504],
      handler: async (c) => {
        const b = (c.body ?? {}) as { name?: string; kind?: string };
        return { status: 201, body: await api.pair({ deviceId: Number(c.params['deviceId']), name: b.name, kind: b.kind }) };
      },
    },
    {
      id: 'unpairDevice',
      method: 'delete',
      path: '/api/devices/{deviceId}/pairing',
      summary: "Unpair a device: its identity is revoked and every phone's access to it ends",
      auth: 'session',
      params: [deviceIdParam],
      status: 204,
      errors: [404, 409],
      handler: async (c) => {
        await api.unpair(Number(c.params['deviceId']));
        return { status: 204 };
      },
    },
    {
      id: 'listPhones',
      method: 'get',
      path: '/api/phones',
      summary: 'Enrolled phones',
      auth: 'session',
      status: 200,
      response: { list: 'Phone' },
      errors: [],
      handler: () => ({ body: api.phones() }),
    },
    {
      id: 'removePhone',
      method: 'delete',
      path: '/api/phones/{phoneId}',
      summary: 'Remove a phone: it can no longer register and loses every grant',
      auth: 'session',
      params: [phoneIdParam],
      status: 204,
      errors: [404],
      handler: async (c) => {
        await api.removePhone(c.params['phoneId']!);
        return { status: 204 };
      },
    },
    {
      id: 'createEnrollment',
      method: 'post',
      path: '/api/enrollments',
      summary: 'Add a phone: a one-time token (text, link and QR code) for `ntm enroll` on the phone',
      auth: 'session',
      body: 'EnrollmentRequest',
      status: 201,
      response: 'Enrollment',
      errors: [409],
      handler: (c) => ({ status: 201, body: api.createEnrollment((c.body as { name: string }).name) }),
    },
    {
      id: 'listShares',
      method: 'get',
      path: '/api/shares',
      summary: 'Devices of this household shared with other households (issue 13): who, which device, which ports',
      auth: 'session',
      status: 200,
      response: { list: 'Share' },
      errors: [],
      handler: () => ({ body: api.shares() }),
    },
    {
      id: 'createShareInvite',
      method: 'post',
      path: '/api/shares',
      summary: "Share a paired device with another household: an invitation code for that household's page (valid agent.shareTtlS)",
      auth: 'session',
      body: 'ShareInviteRequest',
      status: 201,
      response: 'ShareInvite',
      errors: [404, 409],
      handler: (c) => {
        const b = c.body as { deviceId: number; household: string; ports: number[] };
        return { status: 201, body: api.createShareInvite(b.deviceId, b.household, b.ports) };
      },
    },
    {
      id: 'revokeShare',
      method: 'delete',
      path: '/api/shares/{phoneId}',
      summary: "End a share: the other household's agent is no longer admitted and its connections are cut",
      auth: 'session',
      params: [{ ...phoneIdParam, description: "the other household's identity (peerId)" }],
      status: 204,
      errors: [404],
      handler: async (c) => {
        await api.revokeShare(c.params['phoneId']!);
        return { status: 204 };
      },
    },
    {
      id: 'listRemoteShares',
      method: 'get',
      path: '/api/remote-shares',
      summary: 'Devices other households shared with this one, and which devices of this household may use each',
      auth: 'session',
      status: 200,
      response: { list: 'RemoteShare' },
      errors: [],
      handler: () => ({ body: api.remoteShares() }),
    },
    {
      id: 'acceptShare',
      method: 'post',
      path: '/api/remote-shares',
      summary: "Accept another household's invitation; the chosen devices of this household may use the shared device",
      auth: 'session',
      body: 'AcceptShareRequest',
      status: 201,
      response: 'RemoteShare',
      errors: [404, 409, 502, 504],
      handler: async (c) => {
        const b = c.body as { code: string; users: number[] };
        return { status: 201, body: await api.acceptShare(b.code, b.users) };
      },
    },
    {
      id: 'setRemoteShareUsers',
      method: 'put',
      path: '/api/remote-shares/{shareId}',
      summary: 'Choose which devices of this household may use a shared device',
      auth: 'session',
      params: [shareIdParam],
      body: 'ShareUsersRequest',
      status: 200,
      response: 'RemoteShare',
      errors: [404],
      handler: (c) => ({ body: api.setRemoteShareUsers(Number(c.params['shareId']), (c.body as { users: number[] }).users) }),
    },
    {
      id: 'removeRemoteShare',
      method: 'delete',
      path: '/api/remote-shares/{shareId}',
      summary: 'Stop using a device another household shared',
      auth: 'session',
      params: [shareIdParam],
      status: 204,
      errors: [404],
      handler: async (c) => {
        await api.removeRemoteShare(Number(c.params['shareId']));
        return { status: 204 };
      },
    },
    {
      id: 'listGrants',
      method: 'get',
      path: '/api/grants',
      summary: 'Which phone may reach which paired device, and on which ports',
      auth: 'session',
      status: 200,
      response: { list: 'Grant' },
      errors: [],
      handler: () => ({ body: api.grants() }),
    },
    {
      id: 'setGrant',
      method: 'put',
      path: '/api/grants/{phoneId}/{deviceId}',
      summary: 'Let a phone reach a paired device (on the given ports; an empty list allows all)',
      auth: 'session',
      params: [phoneIdParam, deviceIdParam],
      body: 'GrantRequest',
      status: 200,
      response: 'Grant',
      errors: [404, 409],
      handler: (c) => {
        const phoneId = c.params['phoneId']!.toLowerCase();
        const deviceId = Number(c.params['deviceId']);
        api.setGrant(phoneId, deviceId, (c.body as { ports: number[] }).ports);
        const g = api.grants().find((x) => x.phoneId === phoneId && x.deviceId === deviceId);
        if (!g) throw new NotFoundError('the grant was not kept');
        return { body: g };
      },
    },
    {
      id: 'revokeGrant',
      method: 'delete',
      path: '/api/grants/{phoneId}/{deviceId}',
      summary: "End a phone's access to a device",
      auth: 'session',
      params: [phoneIdParam, deviceIdParam],
      status: 204,
      errors: [404],
      handler: (c) => {
        api.revokeGrant(c.params['phoneId']!.toLowerCase(), Number(c.params['deviceId']));
        return { status: 204 };
      },
    },
    {
      id: 'getQos',
      method: 'get',
      path: '/api/qos',
      summary: 'QoS: the link rates, every device\'s and phone\'s class and limits, and whether the kernel enforces them',
      auth: 'session-or-operator',
      status: 200,
      response: 'Qos',
      errors: [],
      handler: () => ({ body: api.qos() }),
    },
    {
      id: 'setQosLink',
      method: 'put',
      path: '/api/qos/link',
      summary: "Set the household's link rates (the plan the ISP sells); 0 in a direction: not shaped there",
      auth: 'session-or-operator',
      body: 'QosLink',
      status: 200,
      response: 'Qos',
      errors: [],
      handler: async (c) => ({ body: await api.setQosLink(c.body as QosLink) }),
    },
    {
      id: 'setDeviceQos',
      method: 'put',
      path: '/api/qos/devices/{deviceId}',
      summary: 'Give a paired device a class ("priority": this device first) and optional rate limits',
      auth: 'session-or-operator',
      params: [deviceIdParam],
      body: 'QosRule',
      status: 200,
      response: 'Qos',
      errors: [404],
      handler: async (c) => ({ body: await api.setQosRule({ deviceId: Number(c.params['deviceId']) }, c.body as QosRule) }),
    },
    {
      id: 'clearDeviceQos',
      method: 'delete',
      path: '/api/qos/devices/{deviceId}',
      summary: "Remove a device's QoS rule (it goes back to the normal class, unlimited)",
      auth: 'session-or-operator',
      params: [deviceIdParam],
      status: 200,
      response: 'Qos',
      errors: [404],
      handler: async (c) => ({ body: await api.setQosRule({ deviceId: Number(c.params['deviceId']) }, null) }),
    },
    {
      id: 'setPhoneQos',
      method: 'put',
      path: '/api/qos/phones/{phoneId}',
      summary: "Give a phone's tunnel traffic a class and optional rate limits",
      auth: 'session-or-operator',
      params: [phoneIdParam],
      body: 'QosRule',
      status: 200,
      response: 'Qos',
      errors: [404],
      handler: async (c) => ({ body: await api.setQosRule({ phoneId: c.params['phoneId']!.toLowerCase() }, c.body as QosRule) }),
    },
    {
      id: 'clearPhoneQos',
      method: 'delete',
      path: '/api/qos/phones/{phoneId}',
      summary: "Remove a phone's QoS rule",
      auth: 'session-or-operator',
      params: [phoneIdParam],
      status: 200,
      response: 'Qos',
      errors: [404],
      handler: async (c) => ({ body: await api.setQosRule({ phoneId: c.params['phoneId']!.toLowerCase() }, null) }),
    },
    {
      id: 'getStatus',
      method: 'get',
      path: '/api/status',
      summary: 'Health of the agent, its DC and RS and the data path, and the live tunnels',
      auth: 'session',
      status: 200,
      response: 'Status',
      errors: [],
      handler: () => ({ body: { health: api.health(), tunnels: api.tunnels() } }),
    },
    {
      id: 'getTraffic',
      method: 'get',
      path: '/api/traffic',
      summary: 'Traffic per connection (device and phone) in 5 s steps over the last 5 minutes: the status page\'s charts',
      auth: 'session',
      status: 200,
      response: 'Traffic',
      errors: [],
      handler: () => ({ body: api.traffic() }),
    },
    {
      id: 'listEvents',
      method: 'get',
      path: '/api/events',
      summary: 'Recent events, newest first',
      auth: 'session',
      params: [{ name: 'limit', in: 'query', required: false, schema: { type: 'string', pattern: '^[1-9][0-9]{0,2}$' }, description: '1–999, default 50' }],
      status: 200,
      response: { list: 'Event' },
      errors: [],
      handler: (c) => ({ body: api.events(c.query['limit'] ? Number(c.query['limit']) : 50) }),
    },
    {
      id: 'liveUpdates',
      method: 'get',
      path: '/api/live',
      summary: 'Live updates (server-sent events): status, traffic, changed, event',
      description:
        'text/event-stream. `event: status` carries {health, tunnels} (a Status) when it changes; `event: traffic` ' +
        'carries a Traffic at every new step; `event: changed` carries {devices, phones, grants} booleans saying ' +
        'which lists to read again; `event: event` carries an Event.',
      auth: 'session',
      status: 200,
      response: 'stream',
      errors: [503],
      handler: (c) => {
        if (d.live.full) throw new TooManyStreamsError();
        const idHash = c.session!.idHash;
        const req = c.ctx.req;
        // The stream outlives the usual request timeouts; Nagle would hold back the small event frames.
        req.socket.setTimeout(0);
        req.socket.setNoDelay(true);
        req.socket.setKeepAlive(true);
        c.ctx.type = 'text/event-stream; charset=utf-8';
        c.ctx.set('Cache-Control', 'no-store');
        c.ctx.set('X-Accel-Buffering', 'no');
        const stream = d.live.open(() => sessions.alive(idHash));
        req.on('close', () => stream.destroy());
        return { status: 200, body: stream };
      },
    },
  ];
}
