// The web layer's typed errors, one class per condition, each with its HTTP status and a message safe to show
// (STYLE habit 5/6). Everything else that reaches the error handler is an internal error: logged, never shown.
import { NtmError } from '../../agent/src/types/errors.js';

/** Base of the web layer's own errors: `status` is the HTTP status; the message is always safe to show. */
export abstract class WebError extends NtmError {
  abstract readonly status: number;
  override readonly expose = true;
  /** Extra response headers (Retry-After, Allow). */
  headers: Record<string, string> = {};
}

/** No valid session (HTTP 401). */
export class UnauthenticatedError extends WebError {
  override readonly name = 'UnauthenticatedError';
  override readonly code = 'unauthenticated';
  readonly status = 401;
  constructor() {
    super('sign in first');
  }
}

/** The password given at sign-in is wrong (HTTP 401). */
export class WrongPasswordError extends WebError {
  override readonly name = 'WrongPasswordError';
  override readonly code = 'wrong_password';
  readonly status = 401;
  constructor(readonly field = 'password') {
    super('that password is not right');
  }
}

/** The setup code given on first start is wrong (HTTP 403). */
export class WrongSetupCodeError extends WebError {
  override readonly name = 'WrongSetupCodeError';
  override readonly code = 'wrong_setup_code';
  readonly status = 403;
  readonly field = 'setupCode';
  constructor() {
    super('that setup code is not right; it is printed on the letter from your provider');
  }
}

/** A state-changing request without the session's CSRF token (HTTP 403). */
export class CsrfError extends WebError {
  override readonly name = 'CsrfError';
  override readonly code = 'csrf';
  readonly status = 403;
  constructor() {
    super('missing or wrong X-CSRF-Token header; reload the page');
  }
}

/** A state-changing request from another site (Origin / Sec-Fetch-Site), HTTP 403. */
export class CrossOriginError extends WebError {
  override readonly name = 'CrossOriginError';
  override readonly code = 'cross_origin';
  readonly status = 403;
  constructor() {
    super('requests from other sites are not accepted');
  }
}

/** The Host header names a host this agent is not (DNS rebinding), HTTP 421. */
export class MisdirectedHostError extends WebError {
  override readonly name = 'MisdirectedHostError';
  override readonly code = 'misdirected';
  readonly status = 421;
  constructor(host: string) {
    super(`this agent does not answer to the host name "${host.slice(0, 100)}"; use its address`);
  }
}

/** Too many failed sign-ins (HTTP 429). */
export class RateLimitedError extends WebError {
  override readonly name = 'RateLimitedError';
  override readonly code = 'rate_limited';
  readonly status = 429;
  constructor(readonly retryAfterS: number) {
    super(`too many wrong attempts; try again in ${retryAfterS} s`);
    this.headers = { 'Retry-After': String(retryAfterS) };
  }
}

/** The request body exceeds the limit (HTTP 413). */
export class PayloadTooLargeError extends WebError {
  override readonly name = 'PayloadTooLargeError';
  override readonly code = 'too_large';
  readonly status = 413;
  constructor(limit: number) {
    super(`the request body is larger than ${limit} bytes`);
  }
}

/** The request body is not JSON (HTTP 415). */
export class UnsupportedMediaTypeError extends WebError {
  override readonly name = 'UnsupportedMediaTypeError';
  override readonly code = 'unsupported_media_type';
  readonly status = 415;
  constructor() {
    super('send the request body as application/json');
  }
}

/** No route under /api has this path (HTTP 404). */
export class NoSuchRouteError extends WebError {
  override readonly name = 'NoSuchRouteError';
  override readonly code = 'not_found';
  readonly status = 404;
  constructor(path: string) {
    super(`no API operation at ${path.slice(0, 200)}`);
  }
}

/** The path exists but not with this method (HTTP 405). */
export class MethodNotAllowedError extends WebError {
  override readonly name = 'MethodNotAllowedError';
  override readonly code = 'method_not_allowed';
  readonly status = 405;
  constructor(method: string, allowed: readonly string[]) {
    super(`${method} is not allowed here (allowed: ${allowed.join(', ')})`);
    this.headers = { Allow: allowed.join(', ') };
  }
}

/** First start, but no setup code was given to the web server (HTTP 503). */
export class SetupUnavailableError extends WebError {
  override readonly name = 'SetupUnavailableError';
  override readonly code = 'setup_unavailable';
  readonly status = 503;
  constructor() {
    super('this agent has no setup code; ask your provider to reset it');
  }
}

/** Too many live-update connections open (HTTP 503). */
export class TooManyStreamsError extends WebError {
  override readonly name = 'TooManyStreamsError';
  override readonly code = 'too_many_streams';
  readonly status = 503;
  constructor() {
    super('too many pages are open; close some and reload');
  }
}

/** listenUnix: another live server already answers on that socket path. */
export class SocketInUseError extends NtmError {
  override readonly name = 'SocketInUseError';
  override readonly code = 'socket_in_use';
  constructor(readonly path: string) {
    super(`${path} is in use by a running server`);
  }
}

/** HTTP status for an error the agent threw (InputError, NotFoundError, …); undefined for internal errors. */
export function statusOf(err: unknown): number | undefined {
  if (err instanceof WebError) return err.status;
  if (!(err instanceof NtmError) || !err.expose) return undefined;
  switch (err.code) {
    case 'bad_request':
      return 400;
    case 'not_found':
      return 404;
    case 'conflict':
      return 409;
    // The household's DC refused the registration (its pool is full, …): the home's state, not a broken agent.
    case 'registration_refused':
      return 409;
    case 'deadline_exceeded':
      return 504;
    case 'rejected':
      return 502;
    default:
      return undefined;
  }
}
