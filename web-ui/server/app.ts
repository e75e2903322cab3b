// The household's web server: a koa app serving the page and the JSON API under /api (described at
// /api/openapi.json), over the AgentApi. createWebApp() is what the agent calls; it listens on TCP and/or a unix
// socket. Order of checks on every request: security headers, Host (DNS rebinding), then per API operation:
// session, same origin and CSRF token (state-changing calls), parameters, body (size-limited JSON), schema, handler.
import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { connect, type AddressInfo, type Socket } from 'node:net';
import type { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import Koa from 'koa';
import Router from '@koa/router';
import { InputError } from '../../agent/src/types/errors.js';
import type { AgentApi } from '../../agent/src/types/household.js';
import type { OwnerStore } from '../../agent/src/types/owner.js';
import { silentLogger, type Logger } from '../../agent/src/util/log.js';
import { operations, type Operation } from './api.js';
import { clientKey, DEFAULT_LIMITS, DEFAULT_SESSIONS, LoginLimiter, safeEqual, Sessions, type LimitPolicy, type SessionPolicy } from './auth.js';
import { DEFAULT_BODY_LIMIT, readJsonBody } from './body.js';
import {
  CrossOriginError,
  CsrfError,
  MethodNotAllowedError,
  MisdirectedHostError,
  NoSuchRouteError,
  SocketInUseError,
  statusOf,
  UnauthenticatedError,
  WebError,
} from './errors.js';
import { LiveHub, type LiveOptions } from './live.js';
import { buildOpenApi, COMPONENTS, type OperationSpec } from './openapi.js';
import { validate } from './schema.js';
import { HostAllowList, readSessionCookie, sameOrigin, securityHeaders } from './security.js';
import { loadStatic } from './static.js';

export interface WebAppOptions {
  readonly api: AgentApi;
  /** The household store: the owner's password, sessions and sign-in attempts live there. */
  readonly store: OwnerStore;
  /** The one-time setup code (agent.setupCodeFile); a function is asked each time (the file may change). */
  readonly setupCode: string | null | (() => string | null);
  /** Host names accepted besides localhost and the agent's own addresses (agent.allowedHosts). */
  readonly allowedHosts?: readonly string[];
  readonly log?: Logger;
  /** Called once the owner's password is set (the agent deletes the setup code file). */
  readonly onSetupComplete?: () => void;
  /** Where the page's files are; default: dist/web-ui/client next to this module's directory. */
  readonly clientDir?: string;
  /**
   * The certificate for HTTPS listeners (cookies get Secure and the __Host- prefix there); TCP listeners are HTTPS
   * unless listen() is told otherwise; the unix socket stays plain. Its SHA-256 fingerprint is shown on the page.
   */
  readonly tls?: { readonly key: string | Buffer; readonly cert: string | Buffer };
  readonly version?: string;
  readonly now?: () => number;
  /** Monotonic ms (the sign-in limiter's clock runs on it); default performance.now. Tests drive it with `now`. */
  readonly monotonic?: () => number;
  readonly limits?: Partial<LimitPolicy>;
  readonly sessions?: Partial<SessionPolicy>;
  readonly live?: LiveOptions;
  readonly bodyLimit?: number;
  /**
   * The agent's operator token (DATADIR/operator-token): operations marked 'session-or-operator' (QoS) also take
   * `Authorization: Bearer <token>`, for the ISP's controller. Absent: sessions only.
   */
  readonly operatorToken?: string;
  /** Interface addresses for the Host check (tests); default os.networkInterfaces. */
  readonly interfaces?: () => ReturnType<typeof networkInterfaces>;
}

export interface WebApp {
  readonly koa: Koa;
  readonly operations: readonly OperationSpec[];
  readonly openapi: Record<string, unknown>;
  /**
   * Listens on "addr:port" / "[v6]:port" (port 0: any); resolves with the bound address. The bound address joins
   * the Host allow-list (a wildcard address: every interface address). `clients`: connections from other source
   * addresses are closed at once (the LAN-only page).
   */
  listen(addr: string, how?: ListenOptions): Promise<{ address: string; port: number }>;
  listenUnix(path: string): Promise<void>;
  close(): Promise<void>;
}

export interface ListenOptions {
  /** HTTPS with WebAppOptions.tls (default: whether tls was given). */
  readonly tls?: boolean;
  /** Which source addresses may connect; default: any. */
  readonly clients?: (remoteAddress: string) => boolean;
}

function parseListen(addr: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(addr) ?? /^([^:[\]]*):(\d{1,5})$/.exec(addr);
  if (!m || Number(m[2]) > 65535) throw new InputError(`listen address must be addr:port or [v6]:port, not "${addr}"`, 'listen');
  return { host: m[1] || '::', port: Number(m[2]) };
}

/** Express-style path of the router for an OpenAPI path: /a/{id} → /a/:id. */
function routerPath(p: string): string {
  return p.replace(/\{(\w+)\}/g, ':$1');
}

function isStream(v: unknown): v is NodeJS.ReadableStream {
  return typeof v === 'object' && v !== null && typeof (v as { pipe?: unknown }).pipe === 'function';
}

export function createWebApp(opts: WebAppOptions): WebApp {
  const log = (opts.log ?? silentLogger).child({ part: 'web' });
  const now = opts.now ?? Date.now;
  const { api, store } = opts;
  const sessions = new Sessions(store, now, { ...DEFAULT_SESSIONS, ...opts.sessions });
  const limiter = new LoginLimiter(store, now, { ...DEFAULT_LIMITS, ...opts.limits }, opts.monotonic);
  const live = new LiveHub(api, log, opts.live);
  const hosts = new HostAllowList(opts.allowedHosts ?? [], now, opts.interfaces);
  const bodyLimit = opts.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const files = loadStatic(opts.clientDir ?? join(import.meta.dirname, '..', 'client'));
  const setupCode = typeof opts.setupCode === 'function' ? opts.setupCode : () => opts.setupCode as string | null;
  let setupDone = false;

  let openapi: Record<string, unknown> = {};
  const ops: Operation[] = operations({
    api,
    store,
    sessions,
    limiter,
    live,
    setupCode,
    onSetupComplete: () => {
      if (setupDone) return;
      setupDone = true;
      log.info('the owner set a password; the setup code is spent');
      opts.onSetupComplete?.();
    },
    openapi: () => openapi,
    certificateFingerprint: opts.tls ? new X509Certificate(opts.tls.cert).fingerprint256 : null,
  });
  openapi = buildOpenApi(ops, opts.version ?? '0.1.0');

  const app = new Koa();
  app.proxy = false;
  app.on('error', (err: unknown) => log.warn('connection error', { err }));

  // 1. Headers, Host check, and the one place errors become responses.
  app.use(async (ctx, next) => {
    const isApi = ctx.path === '/api' || ctx.path.startsWith('/api/');
    ctx.set(securityHeaders(ctx.secure));
    if (isApi) ctx.set('Cache-Control', 'no-store');
    try {
      if (!hosts.allows(ctx.get('host'))) throw new MisdirectedHostError(ctx.get('host'));
      await next();
    } catch (err) {
      const status = statusOf(err) ?? httpErrorStatus(err);
      let body: { error: string; message: string; field?: string };
      if (status === undefined) {
        log.error('request failed', { method: ctx.method, path: ctx.path, err, stack: (err as Error)?.stack });
        ctx.status = 500;
        body = { error: 'internal', message: 'something went wrong inside the agent; the details are in its log' };
      } else {
        ctx.status = status;
        const e = err as { code?: unknown; message: string; field?: unknown };
        body = { error: typeof e.code === 'string' ? e.code : 'bad_request', message: e.message };
        if (typeof e.field === 'string') body.field = e.field;
        if (err instanceof WebError) ctx.set(err.headers);
        if (status >= 500) log.warn('request refused', { method: ctx.method, path: ctx.path, err });
        else log.debug('request refused', { method: ctx.method, path: ctx.path, status, code: body.error });
      }
      // A body we stopped reading must not be parsed as the next request.
      if (status === 413) ctx.set('Connection', 'close');
      if (isApi || status === undefined || status === 421) ctx.body = body;
      else {
        ctx.type = 'text/plain; charset=utf-8';
        ctx.body = body.message;
      }
    }
  });

  // 2. The API: exactly the operations of the table.
  const router = new Router();
  for (const op of ops) {
    router.register(routerPath(op.path), [op.method.toUpperCase()], async (ctx) => {
      const tls = ctx.secure;
      const session = sessions.get(readSessionCookie(ctx.get('cookie'), tls));
      // The ISP's controller: a bearer token is never sent by a browser on its own, so it needs no CSRF token.
      const bearer = /^Bearer\s+(\S+)$/i.exec(ctx.get('authorization'))?.[1];
      const operator = op.auth === 'session-or-operator' && bearer !== undefined;
      if (operator && (!opts.operatorToken || !safeEqual(bearer, opts.operatorToken))) throw new UnauthenticatedError();
      if (op.auth !== 'public' && !operator && session === null) throw new UnauthenticatedError();
      if (op.method !== 'get' && !operator) {
        if (!sameOrigin(ctx.headers, tls ? 'https' : 'http')) throw new CrossOriginError();
        if (session !== null && op.auth !== 'public' && !safeEqual(ctx.get('x-csrf-token'), session.csrf)) throw new CsrfError();
      }
      const params: Record<string, string> = {};
      const query: Record<string, string> = {};
      for (const p of op.params ?? []) {
        const raw: unknown = p.in === 'path' ? (ctx.params as Record<string, string>)[p.name] : ctx.query[p.name];
        if (raw === undefined) {
          if (p.required) throw new InputError(`${p.name} is required`, p.name);
          continue;
        }
        if (typeof raw !== 'string') throw new InputError(`${p.name} may be given once`, p.name);
        const f = validate(p.schema, raw, COMPONENTS, p.name);
        if (f) throw new InputError(f.message, f.field);
        (p.in === 'path' ? params : query)[p.name] = raw;
      }
      let body: unknown;
      if (op.body) {
        body = (await readJsonBody(ctx.req, bodyLimit)) ?? {};
        const f = validate({ $ref: `#/components/schemas/${op.body}` }, body, COMPONENTS);
        if (f) throw new InputError(f.message, f.field);
      }
      const reply = await op.handler({ ctx, body, params, query, session, client: clientKey(ctx.req.socket.remoteAddress), tls });
      ctx.status = reply.status ?? op.status;
      if (isStream(reply.body)) ctx.body = reply.body;
      else if (reply.body !== undefined) ctx.body = reply.body;
    });
  }
  app.use(router.routes());

  // 3. Anything else under /api is a JSON 404 or 405; everything else is the page's files.
  app.use(async (ctx, next) => {
    if (ctx.path !== '/api' && !ctx.path.startsWith('/api/')) return next();
    const m = router.match(ctx.path, ctx.method);
    const allowed = [...new Set(m.path.flatMap((l) => l.methods))].filter((x) => x !== 'HEAD');
    if (allowed.length > 0) throw new MethodNotAllowedError(ctx.method, allowed);
    throw new NoSuchRouteError(ctx.path);
  });
  app.use((ctx) => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      ctx.status = 405;
      ctx.set('Allow', 'GET, HEAD');
      return;
    }
    const f = files.get(ctx.path);
    if (!f) {
      ctx.status = 404;
      ctx.type = 'text/plain; charset=utf-8';
      ctx.body = 'not found';
      return;
    }
    ctx.status = 200;
    ctx.set('Cache-Control', 'no-cache');
    ctx.etag = f.etag;
    if (ctx.fresh) {
      ctx.status = 304;
      return;
    }
    ctx.type = f.type;
    ctx.body = f.body;
  });

  const servers: Server[] = [];
  const configure = (s: Server): Server => {
    // Slow-loris bounds; live-update streams are responses, which these do not limit.
    s.headersTimeout = 10_000;
    s.requestTimeout = 30_000;
    s.maxHeadersCount = 64;
    servers.push(s);
    return s;
  };
  const handler = app.callback();

  return {
    koa: app,
    operations: ops,
    openapi,
    listen(addr: string, how: ListenOptions = {}) {
      const { host, port } = parseListen(addr);
      const tls = how.tls ?? !!opts.tls;
      if (tls && !opts.tls) throw new InputError(`HTTPS on ${addr} needs a certificate`, 'listen');
      const s = configure(tls && opts.tls ? createTlsServer({ key: opts.tls.key, cert: opts.tls.cert }, handler) : createServer(handler));
      const clients = how.clients;
      // Before any byte is read (and before a TLS handshake): a refused source learns nothing but a closed connection.
      if (clients) s.on('connection', (sock: Socket) => void (clients(sock.remoteAddress ?? '') || sock.destroy()));
      return new Promise((resolve, reject) => {
        s.once('error', reject);
        s.listen(port, host, () => {
          s.off('error', reject);
          const a = s.address() as AddressInfo;
          hosts.serveOn(a.address);
          log.info('web UI listening', { address: a.address, port: a.port, tls, ...(clients ? { clients: 'restricted' } : {}) });
          resolve({ address: a.address, port: a.port });
        });
      });
    },
    async listenUnix(path: string) {
      await removeStaleSocket(path);
      const s = configure(createServer(handler));
      return new Promise((resolve, reject) => {
        s.once('error', reject);
        s.listen(path, () => {
          s.off('error', reject);
          chmodSync(path, 0o660);
          log.info('web UI listening', { socket: path });
          resolve();
        });
      });
    },
    async close() {
      live.close();
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.close(() => resolve());
              s.closeAllConnections();
            }),
        ),
      );
      servers.length = 0;
    },
  };
}

/** A socket file left by a crashed run would make listen fail (EADDRINUSE); a live one must not be taken over. */
async function removeStaleSocket(path: string): Promise<void> {
  if (!existsSync(path)) return;
  const live = await new Promise<boolean>((resolve) => {
    const c = connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (live) throw new SocketInUseError(path);
  rmSync(path, { force: true });
}

/** Client errors raised by koa or its helpers (http-errors: `status` 4xx with `expose`). */
function httpErrorStatus(err: unknown): number | undefined {
  const e = err as { status?: unknown; expose?: unknown };
  return typeof e?.status === 'number' && e.status >= 400 && e.status < 500 && e.expose === true ? e.status : undefined;
}
