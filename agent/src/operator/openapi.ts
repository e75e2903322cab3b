// The operator API's OpenAPI 3.1 document (served at /openapi.json) and the schemas its tests check answers against.
// Written with the JSON Schema builders of util/json-schema.ts, as the household API's document is; the tests
// validate answers with web-ui/server/schema.ts.

import { bool, int, list, nint, obj, ref, str, type Schema } from '../util/json-schema.js';

const ntmId = str({ pattern: '^0x[0-9a-f]{40}$', description: 'an NTM ID: 0x and 40 hex digits (hash of the public key)' });
const ms = (description: string): Schema => int({ minimum: 0, description: `${description} (ms since the Unix epoch)` });

export const OPERATOR_COMPONENTS: Readonly<Record<string, Schema>> = {
  Error: obj({ error: str({ description: 'stable code: bad_request, unauthenticated, not_found, …' }), message: str() }),
  Terminal: obj({
    id: ntmId,
    name: str(),
    v4: str({ description: 'virtual IPv4 address' }),
    v6: str({ description: 'virtual IPv6 address' }),
    lastRegistration: ms('timestamp of its last accepted registration (its own clock, checked within dc.freshnessS)'),
    lastSeen: ms('when the DC last heard an authentic packet from it'),
    online: bool,
    revoked: bool,
    subscriber: str({ description: 'the subscriber of the enrollment key that admitted it ("" if none)' }),
    tags: list(str()),
    keyId: { type: ['string', 'null'], description: 'the enrollment key that admitted it' },
  }),
  Subscriber: obj({
    subscriber: str(),
    keys: list(str({ description: 'enrollment key ids' })),
    terminals: list(ref('Terminal')),
    lastRegistration: nint({ description: 'the latest registration of any of its terminals (ms since the epoch)' }),
  }),
  Key: obj({
    id: str({ pattern: '^k[0-9a-f]{12}$' }),
    subscriber: str(),
    tags: list(str()),
    description: str(),
    createdAt: ms('created'),
    expiresAt: ms('expires'),
    maxUses: int({ minimum: 0, description: '0: any number of terminals' }),
    uses: int({ minimum: 0 }),
    revokedAt: nint(),
    state: str({ enum: ['valid', 'revoked', 'expired', 'used-up'] }),
  }),
  NewKey: obj(
    {
      subscriber: str({ pattern: '^[A-Za-z0-9_-]{0,64}$' }),
      tags: list(str({ pattern: '^[a-z0-9][a-z0-9:_.-]{0,63}$' })),
      description: str({ maxLength: 63 }),
      expires: str({ pattern: '^[0-9]+(s|m|h|d)$', description: 'lifetime, like 30m, 12h, 7d (at most 90d); default 7d' }),
      uses: int({ minimum: 0, maximum: 1_000_000, description: 'terminals it may admit; 0: any number; default 1' }),
    },
    [],
  ),
  CreatedKey: obj({ key: ref('Key'), token: str({ description: 'the key (ntm1:…) for `ntm enroll`; shown once' }) }),
  Revoked: obj({ id: ntmId, revoked: bool }),
};

const json = (schema: Schema) => ({ content: { 'application/json': { schema } } });
const err = (description: string) => ({ description, ...json(ref('Error')) });
const AUTH = { 401: err('no or wrong operator token') };

export const OPERATOR_OPENAPI = {
  openapi: '3.1.0',
  info: {
    title: 'NTMobile DC operator API',
    version: '1',
    description:
      "The ISP's view of one DC: its terminals, the subscribers they belong to, enrollment keys. Served on operator.dcListen (loopback by default), authenticated with the bearer token in the DC's operator-token file.",
  },
  components: {
    schemas: OPERATOR_COMPONENTS,
    securitySchemes: { operatorToken: { type: 'http', scheme: 'bearer' } },
  },
  security: [{ operatorToken: [] }],
  paths: {
    '/api/v1/terminals': { get: { summary: 'every terminal this DC manages', responses: { 200: { description: 'terminals', ...json(list(ref('Terminal'))) }, ...AUTH } } },
    '/api/v1/terminals/{id}/revoke': {
      post: {
        summary: 'revoke a terminal: its channel closes, its registrations and directions to it are refused from now on',
        parameters: [{ name: 'id', in: 'path', required: true, schema: ntmId }],
        responses: { 200: { description: 'revoked', ...json(ref('Revoked')) }, 404: err('no such terminal'), ...AUTH },
      },
    },
    '/api/v1/subscribers': {
      get: { summary: "subscribers (from their enrollment keys) with their terminals' last registration", responses: { 200: { description: 'subscribers', ...json(list(ref('Subscriber'))) }, ...AUTH } },
    },
    '/api/v1/keys': {
      get: { summary: 'enrollment keys', responses: { 200: { description: 'keys', ...json(list(ref('Key'))) }, ...AUTH } },
      post: {
        summary: 'create an enrollment key',
        requestBody: { required: true, ...json(ref('NewKey')) },
        responses: { 201: { description: 'created', ...json(ref('CreatedKey')) }, 400: err('bad request'), ...AUTH },
      },
    },
    '/api/v1/keys/{id}/revoke': {
      post: {
        summary: 'revoke an enrollment key (terminals it admitted stay)',
        parameters: [{ name: 'id', in: 'path', required: true, schema: str() }],
        responses: { 200: { description: 'the key, revoked', ...json(ref('Key')) }, 404: err('no such key'), ...AUTH },
      },
    },
    '/metrics': { get: { summary: 'Prometheus metrics (no token: scrape it on the operator network)', security: [], responses: { 200: { description: 'text exposition format 0.0.4' } } } },
    '/openapi.json': { get: { summary: 'this document', security: [], responses: { 200: { description: 'OpenAPI 3.1' } } } },
  },
} as const;
