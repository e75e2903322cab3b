// A test-only HTTP client for the web API: real requests (node:http, so the Host header can be anything), a cookie
// jar of one session cookie, and the CSRF header added the way the page adds it. Not used by the product.
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';

export interface WebResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
  /** Parsed JSON, or undefined when the body is not JSON. */
  readonly body: unknown;
}

export interface RequestOptions {
  /** JSON-encoded as the body (Content-Type: application/json). */
  readonly json?: unknown;
  /** A raw body, sent as is (with the headers given). */
  readonly raw?: string | Buffer;
  readonly headers?: Record<string, string>;
  /** Add X-CSRF-Token on non-GET requests when known (default true). */
  readonly csrf?: boolean;
  /** Send the session cookie when known (default true). */
  readonly cookie?: boolean;
  /** Bind the client side to this local address (to be a different client for rate limits). */
  readonly localAddress?: string;
}

export class WebClient {
  cookie: string | null = null;
  csrf: string | null = null;
  /** The last Set-Cookie header seen, whole (for flag checks). */
  lastSetCookie: string | null = null;

  constructor(
    readonly base: string,
    readonly opts: { host?: string; ca?: string | Buffer } = {},
  ) {}

  request(method: string, path: string, o: RequestOptions = {}): Promise<WebResponse> {
    const url = new URL(path, this.base);
    const headers: Record<string, string> = { accept: 'application/json', ...o.headers };
    if (this.opts.host && !Object.keys(headers).some((k) => k.toLowerCase() === 'host')) headers['host'] = this.opts.host;
    let body: string | Buffer | undefined = o.raw;
    if (o.json !== undefined) {
      body = JSON.stringify(o.json);
      headers['content-type'] ??= 'application/json';
    }
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    if (this.cookie && o.cookie !== false) headers['cookie'] = this.cookie;
    if (method !== 'GET' && method !== 'HEAD' && this.csrf && o.csrf !== false) headers['x-csrf-token'] = this.csrf;
    const make = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = make(
        url,
        { method, headers, ...(this.opts.ca ? { ca: this.opts.ca } : {}), ...(o.localAddress ? { localAddress: o.localAddress } : {}), agent: false },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              parsed = undefined;
            }
            const sc = res.headers['set-cookie'];
            if (sc && sc.length > 0) {
              this.lastSetCookie = sc[0]!;
              const pair = sc[0]!.split(';')[0]!;
              this.cookie = pair.endsWith('=') ? null : pair;
            }
            const b = parsed as { csrfToken?: unknown } | undefined;
            if (b && typeof b === 'object' && 'csrfToken' in b) this.csrf = typeof b.csrfToken === 'string' ? b.csrfToken : null;
            resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body: parsed });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  get(path: string, o: RequestOptions = {}): Promise<WebResponse> {
    return this.request('GET', path, o);
  }
  post(path: string, json?: unknown, o: RequestOptions = {}): Promise<WebResponse> {
    return this.request('POST', path, { ...o, ...(json === undefined ? {} : { json }) });
  }
  put(path: string, json?: unknown, o: RequestOptions = {}): Promise<WebResponse> {
    return this.request('PUT', path, { ...o, ...(json === undefined ? {} : { json }) });
  }
  delete(path: string, o: RequestOptions = {}): Promise<WebResponse> {
    return this.request('DELETE', path, o);
  }
}
