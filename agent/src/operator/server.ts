// The operator's HTTP endpoint of a role: Prometheus /metrics (every role) and, on the DC, the operator REST API
// (openapi.ts) behind a bearer token. It listens on the ISP's side only: operator.*Listen, loopback by default, never
// the WAN or the household's LAN page unless an operator binds it there. It reaches the DC through OperatorDc, a
// narrow view (list terminals, revoke one, who the DC is), so it does not depend on how the DC is built inside.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { parseEndpoint } from '../protocol/endpoint.js';
import { ConfigError, InputError, NotFoundError, NtmError } from '../types/errors.js';
import type { Endpoint } from '../types/net.js';
import { silentLogger, type Logger } from '../util/log.js';
import { parseDuration, type EnrollmentKeys } from './enrollment-keys.js';
import type { Metrics } from './metrics.js';
import { OPERATOR_OPENAPI } from './openapi.js';

/** A terminal as the operator sees it. */
export interface OperatorTerminal {
  readonly id: string;
  readonly name: string;
  readonly v4: string;
  readonly v6: string;
  /** The timestamp of its last accepted registration (ms since the epoch). */
  readonly lastRegistration: number;
  readonly lastSeen: number;
  readonly online: boolean;
  readonly revoked: boolean;
}

/** What the operator API needs of a DC, and nothing more. */
export interface OperatorDc {
  readonly publicKey: Uint8Array;
  /** Where terminals reach the DC (written into new enrollment keys). */
  endpoints(): Endpoint[];
  terminals(): OperatorTerminal[];
  /** False when the DC has no such terminal. */
  revoke(id: string): boolean;
}

export interface OperatorApi {
  readonly dc: OperatorDc;
  readonly keys: EnrollmentKeys;
  /** The bearer token (compared in constant time). */
  readonly token: string;
}

export interface OperatorServerOptions {
  readonly listen: string;
  readonly metrics: Metrics;
  readonly api?: OperatorApi;
  readonly log?: Logger;
}

/** Loads the operator token, creating it (256 random bits, mode 0600) the first time. */
export function loadOrCreateToken(path: string): string {
  if (existsSync(path)) {
    const t = readFileSync(path, 'utf8').trim();
    if (t.length < 16) throw new ConfigError('operator.tokenFile', `${path} holds no usable token (at least 16 characters)`);
    return t;
  }
  const t = randomBytes(32).toString('base64url');
  writeFileSync(path, t + '\n', { mode: 0o600, flag: 'wx' });
  return t;
}

class HttpError extends NtmError {
  override readonly name = 'HttpError';
  constructor(
    readonly status: number,
    readonly errorCode: string,
    message: string,
  ) {
    super(message);
  }
}

const MAX_BODY = 64 * 1024;

function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new HttpError(413, 'too_large', `the body is larger than ${MAX_BODY} bytes`));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return resolve({});
      try {
        resolve(JSON.parse(text));
      } catch {
        reject(new HttpError(400, 'bad_request', 'the body is not JSON'));
      }
    });
    req.on('error', reject);
  });
}

export class OperatorServer {
  private constructor(
    private readonly server: Server,
    readonly port: number,
    readonly address: string,
  ) {}

  static async listen(opts: OperatorServerOptions): Promise<OperatorServer> {
    let ep: Endpoint;
    try {
      ep = parseEndpoint(opts.listen);
    } catch (e) {
      throw new ConfigError('operator listen address', (e as Error).message);
    }
    const log = (opts.log ?? silentLogger).child({ part: 'operator' });
    const tokenHash = opts.api ? createHash('sha256').update(opts.api.token).digest() : null;
    const server = createServer((req, res) => {
      handle(req, res, opts, tokenHash).catch((e: unknown) => {
        const he =
          e instanceof HttpError
            ? e
            : e instanceof NotFoundError
              ? new HttpError(404, 'not_found', e.message)
              : e instanceof InputError
                ? new HttpError(400, 'bad_request', e.message)
                : null;
        if (!he) log.error('operator request failed', { err: e, path: req.url });
        send(res, he?.status ?? 500, { error: he?.errorCode ?? 'internal', message: he?.message ?? 'internal error (see the log)' });
      });
    });
    server.requestTimeout = 10_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(ep.port, ep.address, () => resolve());
    });
    const addr = server.address();
    const port = typeof addr === 'object' && addr ? addr.port : ep.port;
    log.info('operator endpoint listening', { address: ep.address, port, api: !!opts.api });
    return new OperatorServer(server, port, ep.address);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) return void res.end();
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(JSON.stringify(body));
}

async function handle(req: IncomingMessage, res: ServerResponse, opts: OperatorServerOptions, tokenHash: Buffer | null): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://operator');
  const path = url.pathname;
  const method = req.method ?? 'GET';
  if (path === '/metrics' && method === 'GET') {
    const text = await opts.metrics.scrape();
    res.writeHead(200, { 'content-type': opts.metrics.contentType });
    return void res.end(text);
  }
  const api = opts.api;
  if (!api || !tokenHash) throw new HttpError(404, 'not_found', `no ${path} here`);
  if (path === '/openapi.json' && method === 'GET') return send(res, 200, OPERATOR_OPENAPI);
  if (!path.startsWith('/api/v1/')) throw new HttpError(404, 'not_found', `no ${path} here`);
  // Hash both sides: timingSafeEqual needs equal lengths, and the hash hides the token's length too.
  const given = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
  if (!given || !timingSafeEqual(createHash('sha256').update(given).digest(), tokenHash)) {
    return send(res, 401, { error: 'unauthenticated', message: 'an operator token is required: Authorization: Bearer <the DC\'s operator-token>' }, { 'www-authenticate': 'Bearer realm="ntm-operator"' });
  }
  const parts = path.slice('/api/v1/'.length).split('/');
  const route = `${method} ${parts[0]}${parts.length > 1 ? `/{id}/${parts.slice(2).join('/')}` : ''}`;
  const id = decodeURIComponent(parts[1] ?? '');
  switch (route) {
    case 'GET terminals':
      return send(res, 200, terminalsView(api));
    case 'POST terminals/{id}/revoke':
      if (!/^0x[0-9a-fA-F]{40}$/.test(id)) throw new HttpError(400, 'bad_request', 'a terminal ID is 0x and 40 hex digits');
      if (!api.dc.revoke(id.toLowerCase())) throw new HttpError(404, 'not_found', `no terminal ${id}`);
      return send(res, 200, { id: id.toLowerCase(), revoked: true });
    case 'GET subscribers':
      return send(res, 200, subscribersView(api));
    case 'GET keys':
      return send(res, 200, api.keys.list());
    case 'POST keys': {
      const body = await readBody(req);
      return send(res, 201, createKey(api, body));
    }
    case 'POST keys/{id}/revoke':
      return send(res, 200, api.keys.revoke(id));
    default:
      throw new HttpError(404, 'not_found', `no ${method} ${path} here`);
  }
}

function terminalsView(api: OperatorApi) {
  const enrolled = api.keys.enrollments();
  return api.dc.terminals().map((t) => {
    const e = enrolled.get(t.id);
    return { ...t, subscriber: e?.subscriber ?? '', tags: e?.tags ?? [], keyId: e?.keyId ?? null };
  });
}

function subscribersView(api: OperatorApi) {
  const bySub = new Map<string, { subscriber: string; keys: string[]; terminals: ReturnType<typeof terminalsView>; lastRegistration: number | null }>();
  const entry = (s: string) => {
    let x = bySub.get(s);
    if (!x) bySub.set(s, (x = { subscriber: s, keys: [], terminals: [], lastRegistration: null }));
    return x;
  };
  for (const k of api.keys.list()) if (k.subscriber) entry(k.subscriber).keys.push(k.id);
  for (const t of terminalsView(api)) {
    if (!t.subscriber) continue;
    const x = entry(t.subscriber);
    x.terminals.push(t);
    x.lastRegistration = Math.max(x.lastRegistration ?? 0, t.lastRegistration);
  }
  return [...bySub.values()].sort((a, b) => a.subscriber.localeCompare(b.subscriber));
}

function createKey(api: OperatorApi, body: unknown) {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new InputError('the body must be a JSON object');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) if (!['subscriber', 'tags', 'description', 'expires', 'uses'].includes(k)) throw new InputError(`unknown field "${k}"`, k);
  const optStr = (k: string): string | undefined => {
    if (b[k] === undefined) return undefined;
    if (typeof b[k] !== 'string') throw new InputError(`${k} must be a string`, k);
    return b[k];
  };
  const tags = b.tags === undefined ? [] : b.tags;
  if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string')) throw new InputError('tags must be a list of strings', 'tags');
  const uses = b.uses === undefined ? 1 : b.uses;
  if (typeof uses !== 'number') throw new InputError('uses must be an integer', 'uses');
  return api.keys.create({
    subscriber: optStr('subscriber') ?? '',
    tags: tags as string[],
    description: optStr('description') ?? '',
    ttlMs: parseDuration(optStr('expires') ?? '7d'),
    maxUses: uses,
    dcPublicKey: api.dc.publicKey,
    dcEndpoints: api.dc.endpoints(),
  });
}
