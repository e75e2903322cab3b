// The API's schemas and the OpenAPI 3.1 document built from the route table (api.ts): one source for the
// documentation at /api/openapi.json, the request validation and the tests that check responses against it.
import { bool, int, list, nint, nstr, obj, ref, str, type Schema } from '../../agent/src/util/json-schema.js';

export const PATTERNS = {
  ntmId: '^0x[0-9a-fA-F]{40}$',
  deviceId: '^[1-9][0-9]{0,14}$',
  mac: '^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$',
} as const;

const name = str({ minLength: 1, maxLength: 63, description: 'a name of 1–63 characters' });
const kind = str({ maxLength: 32, description: 'lamp, camera, printer, … or empty' });
const port = int({ minimum: 1, maximum: 65535 });

export const COMPONENTS: Readonly<Record<string, Schema>> = {
  Error: obj(
    {
      error: str({ description: 'stable machine-readable code, e.g. bad_request, unauthenticated, csrf, rate_limited' }),
      message: str({ description: 'what went wrong, in words fit to show' }),
      field: str({ description: 'the request field at fault, when there is one' }),
    },
    ['error', 'message'],
  ),
  Session: obj({
    authenticated: bool,
    setupRequired: { ...bool, description: 'true on first start: the owner must set a password with the setup code' },
    csrfToken: nstr({ description: 'send as X-CSRF-Token with every POST, PUT and DELETE' }),
    household: nstr({ description: 'the household name (when signed in)' }),
  }),
  Device: obj({
    id: int({ minimum: 1 }),
    name: str(),
    kind: str(),
    mac: nstr(),
    ipv4: nstr(),
    ipv6: nstr(),
    online: bool,
    sources: list(str({ enum: ['mdns', 'neighbour', 'manual'] })),
    lastSeen: nstr({ format: 'date-time' }),
    paired: bool,
    ntmId: nstr({ description: 'the NTM identity the agent holds for the device' }),
    virtualV4: nstr(),
    virtualV6: nstr(),
    ntmName: nstr({ description: 'the name phones reach the device by, like living-room-lamp.ntm (when paired)' }),
  }),
  Phone: obj({
    id: str({ pattern: PATTERNS.ntmId, description: "the phone's NTM ID" }),
    name: str(),
    enrolledAt: str({ format: 'date-time' }),
    online: bool,
    virtualV4: nstr(),
  }),
  Enrollment: obj({
    token: str({ description: 'the one-time token `ntm enroll` takes (ntm1:…)' }),
    link: str({ description: 'the same as a link (ntm://enroll#ntm1:…), what the QR code holds' }),
    qrSvg: str({ description: 'the QR code of the link, SVG markup' }),
    expiresAt: str({ format: 'date-time' }),
    name: str(),
  }),
  Grant: obj({
    phoneId: str({ pattern: PATTERNS.ntmId }),
    deviceId: int({ minimum: 1 }),
    ports: list(port, { description: 'allowed ports; empty = all' }),
  }),
  Tunnel: obj({
    device: str(),
    peer: str(),
    peerName: str(),
    path: str({ description: 'direct, hole-punched or relayed' }),
    state: str(),
    rttMs: { type: 'number' },
    txBytes: int(),
    rxBytes: int(),
  }),
  Health: obj({
    agent: obj({ ok: bool, uptimeS: { type: 'number' }, version: str() }),
    dc: obj({ ok: bool, id: str(), terminals: int(), online: int() }),
    rs: obj({ ok: bool, id: str(), tunnels: int() }),
    dataplane: obj({ ok: bool, drops: { type: 'object', additionalProperties: int() } }),
  }),
  Status: obj({ health: ref('Health'), tunnels: list(ref('Tunnel')) }),
  Traffic: obj({
    stepS: { type: 'number', description: 'length of a step in seconds (5)' },
    points: int({ description: 'steps in every series (60: the last 5 minutes)' }),
    end: nstr({ format: 'date-time', description: 'when the last step ended; null before the first' }),
    connections: list(ref('TrafficSeries')),
  }),
  TrafficSeries: obj({
    device: str({ description: 'the paired device, as Tunnel.device' }),
    peer: str({ description: "the phone's NTM ID, as Tunnel.peer" }),
    peerName: str(),
    connected: { ...bool, description: 'a tunnel is up now (a closed connection stays while its traffic is in the window)' },
    txBytes: list(int({ minimum: 0 }), { description: 'bytes sent to the phone in each step, oldest first' }),
    rxBytes: list(int({ minimum: 0 }), { description: 'bytes received from the phone in each step' }),
    txPackets: list(int({ minimum: 0 })),
    rxPackets: list(int({ minimum: 0 })),
  }),
  Event: obj({ at: str({ format: 'date-time' }), kind: str(), message: str() }),
  Household: obj({ name }),
  Connection: obj({
    tls: bool,
    fingerprint: nstr({ description: "SHA-256 of the web UI's certificate (AB:CD:…), to compare with what the agent printed at start; null: no HTTPS" }),
  }),
  SetupRequest: obj(
    {
      setupCode: str({ minLength: 1, maxLength: 64, description: 'the code on the letter from the provider' }),
      password: str({ minLength: 1, maxLength: 256 }),
      household: name,
    },
    ['setupCode', 'password'],
  ),
  LoginRequest: obj({ password: str({ minLength: 1, maxLength: 256 }) }),
  PasswordChange: obj({ currentPassword: str({ minLength: 1, maxLength: 256 }), newPassword: str({ minLength: 1, maxLength: 256 }) }),
  ManualDevice: obj(
    {
      name,
      kind,
      mac: str({ maxLength: 17, description: 'a MAC address like 02:00:00:aa:bb:cc' }),
      ipv4: str({ maxLength: 15, description: 'an IPv4 address' }),
      ipv6: str({ maxLength: 45, description: 'an IPv6 address' }),
    },
    ['name'],
  ),
  PairRequest: obj({ name, kind }, []),
  Share: obj({
    peerId: str({ pattern: PATTERNS.ntmId, description: "the other household's identity at this household's DC (what DELETE /api/shares/{peerId} takes)" }),
    household: str({ description: 'the other household, as named in the invitation' }),
    deviceId: int({ minimum: 1 }),
    device: str(),
    ports: list(port, { description: 'ports it may use; empty = all' }),
    since: str({ format: 'date-time' }),
    online: { ...bool, description: "the other household's agent is registered with this household's DC now" },
  }),
  ShareInvite: obj({
    code: str({ description: 'the invitation the other household pastes into its page (ntm-share1:DEVICE/ntm1:…)' }),
    link: str({ description: 'the same as a link (ntm://share#…)' }),
    expiresAt: str({ format: 'date-time' }),
    household: str(),
    deviceId: int({ minimum: 1 }),
    ports: list(port),
  }),
  ShareInviteRequest: obj({ deviceId: int({ minimum: 1 }), household: name, ports: list(port, { maxItems: 64 }) }),
  RemoteShare: obj({
    id: int({ minimum: 1 }),
    household: str({ description: 'the household that shared it' }),
    device: str(),
    name: str({ description: "its name on this household's LAN DNS, DEVICE.HOUSEHOLD.ntm" }),
    virtualV4: nstr(),
    virtualV6: nstr(),
    users: list(int({ minimum: 1 }), { description: 'devices of this household that may use it' }),
    online: { ...bool, description: "registered with the other household's DC now" },
    acceptedAt: str({ format: 'date-time' }),
  }),
  AcceptShareRequest: obj({
    code: str({ minLength: 1, maxLength: 2048, description: 'the invitation code or link' }),
    users: list(int({ minimum: 1 }), { maxItems: 256, description: 'devices of this household that may use it' }),
  }),
  ShareUsersRequest: obj({ users: list(int({ minimum: 1 }), { maxItems: 256 }) }),
  EnrollmentRequest: obj({ name }),
  GrantRequest: obj({ ports: list(port, { maxItems: 64 }) }),
  QosRule: obj(
    {
      class: str({ enum: ['priority', 'normal', 'background'], description: 'priority is served first (70% of the link guaranteed), background last' }),
      uplinkKbit: { ...nint({ minimum: 8, maximum: 10_000_000 }), description: "a cap on the household's uplink (kbit/s): a device's uploads, a phone's downloads from home; null: none" },
      downlinkKbit: { ...nint({ minimum: 8, maximum: 10_000_000 }), description: 'a cap towards the LAN (kbit/s): a device\'s downloads, what a phone sends home; null: none' },
    },
    ['class'],
  ),
  QosLink: obj({
    uplinkKbit: int({ minimum: 0, maximum: 10_000_000, description: 'the uplink rate the household is sold (kbit/s); 0: not shaped' }),
    downlinkKbit: int({ minimum: 0, maximum: 10_000_000, description: 'the downlink rate (kbit/s); 0: not shaped' }),
  }),
  QosDeviceRule: obj({ deviceId: int({ minimum: 1 }), class: str(), uplinkKbit: nint(), downlinkKbit: nint() }),
  QosPhoneRule: obj({ phoneId: str({ pattern: PATTERNS.ntmId }), class: str(), uplinkKbit: nint(), downlinkKbit: nint() }),
  Qos: obj({
    link: ref('QosLink'),
    devices: list(ref('QosDeviceRule')),
    phones: list(ref('QosPhoneRule')),
    enforcement: obj({ backend: str(), applied: bool, error: nstr() }),
  }),
};

export interface ParamSpec {
  readonly name: string;
  readonly in: 'path' | 'query';
  readonly schema: Schema;
  readonly required: boolean;
  readonly description?: string;
}

/** What the OpenAPI builder needs of an operation (api.ts adds the handler). */
export interface OperationSpec {
  readonly id: string;
  readonly method: 'get' | 'post' | 'put' | 'delete';
  /** OpenAPI form: /api/devices/{deviceId}/pairing. */
  readonly path: string;
  readonly summary: string;
  /** 'session-or-operator': the page's session, or the agent's operator token as a bearer (the ISP's controller). */
  readonly auth: 'public' | 'session' | 'session-or-operator';
  readonly params?: readonly ParamSpec[];
  readonly body?: string;
  readonly status: number;
  /** Response schema (component name), 'stream' for server-sent events, or undefined for no body. */
  readonly response?: string | { readonly list: string } | 'stream' | 'openapi';
  readonly errors: readonly number[];
  readonly description?: string;
}

const ERROR_TEXT: Record<number, string> = {
  400: 'Bad input (the field is named)',
  401: 'Not signed in, or wrong password',
  403: 'Missing CSRF token, another site, or wrong setup code',
  404: 'No such object',
  405: 'Method not allowed',
  409: 'Conflicts with the current state',
  413: 'Body too large',
  415: 'Body is not JSON',
  421: 'Host header is not this agent',
  429: 'Too many failed attempts (see Retry-After)',
  502: 'The DC refused',
  503: 'Unavailable',
  504: 'The DC did not answer',
};

/** Every API response may be one of these, whatever the operation (middleware before any route). */
const COMMON_ERRORS = [421, 500];

export function buildOpenApi(ops: readonly OperationSpec[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of ops) {
    const responses: Record<string, unknown> = {};
    const ok: Record<string, unknown> = { description: op.summary };
    if (op.response === 'stream') {
      ok['content'] = { 'text/event-stream': { schema: { type: 'string' } } };
    } else if (op.response === 'openapi') {
      ok['content'] = { 'application/json': { schema: { type: 'object' } } };
    } else if (typeof op.response === 'string') {
      ok['content'] = { 'application/json': { schema: ref(op.response) } };
    } else if (op.response) {
      ok['content'] = { 'application/json': { schema: list(ref(op.response.list)) } };
    }
    responses[String(op.status)] = ok;
    const errs = new Set([...op.errors, ...COMMON_ERRORS, ...(op.auth !== 'public' ? [401] : []), ...(op.body ? [400, 413, 415] : [])]);
    if (op.auth !== 'public' && op.method !== 'get') errs.add(403);
    for (const code of [...errs].sort()) {
      responses[String(code)] = {
        description: ERROR_TEXT[code] ?? 'Internal error (details only in the agent log)',
        content: { 'application/json': { schema: ref('Error') } },
      };
    }
    const operation: Record<string, unknown> = {
      operationId: op.id,
      summary: op.summary,
      ...(op.description ? { description: op.description } : {}),
      tags: [op.path.split('/')[2] ?? 'api'],
      security: [
        ...(op.auth === 'public' ? [] : op.method === 'get' ? [{ session: [] }] : [{ session: [], csrf: [] }]),
        ...(op.auth === 'session-or-operator' ? [{ operator: [] }] : []),
      ],
      responses,
    };
    if (op.params?.length) {
      operation['parameters'] = op.params.map((p) => ({
        name: p.name,
        in: p.in,
        required: p.required,
        schema: p.schema,
        ...(p.description ? { description: p.description } : {}),
      }));
    }
    if (op.body) operation['requestBody'] = { required: true, content: { 'application/json': { schema: ref(op.body) } } };
    (paths[op.path] ??= {})[op.method] = operation;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'NTMobile household agent',
      version,
      description:
        'The API the household web page uses: devices on the LAN and their pairing with NTM identities, phones and ' +
        'their enrollment, access grants, and live status. Sign in with POST /api/login (or /api/setup on first ' +
        'start); the session cookie is HttpOnly and SameSite=Strict; every POST, PUT and DELETE made with a session ' +
        'needs the header X-CSRF-Token with the token from GET /api/session. Errors are JSON {error, message, field?}. ' +
        "The QoS operations (/api/qos…) also take the agent's operator token as a bearer, for the ISP's controller " +
        '(paper §3.2.1: the controller gives chosen devices or phones priority); no CSRF token is needed with it.',
    },
    servers: [{ url: '/' }],
    paths,
    components: {
      schemas: COMPONENTS,
      securitySchemes: {
        session: { type: 'apiKey', in: 'cookie', name: 'ntm_session', description: '__Host-ntm_session over TLS' },
        csrf: { type: 'apiKey', in: 'header', name: 'X-CSRF-Token' },
        operator: { type: 'http', scheme: 'bearer', description: "the agent's operator token (DATADIR/operator-token, 0600): the ISP's controller, for the QoS operations" },
      },
    },
  };
}
