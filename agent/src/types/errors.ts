// Typed errors, one class per condition, each with a fixed `name` (STYLE habit 5). Expected outcomes are values, not these.

/** Base of every error this project throws on purpose; `code` is stable and safe to show to a client. */
export class NtmError extends Error {
  override readonly name: string = 'NtmError';
  readonly code: string = 'internal';
  /** True when the message may be shown to an API client (koa's `expose`). */
  readonly expose: boolean = false;
}

/** A request got no answer before its overall deadline, after all retransmissions. */
export class DeadlineExceededError extends NtmError {
  override readonly name = 'DeadlineExceededError';
  override readonly code = 'deadline_exceeded';
  override readonly expose = true;
  constructor(
    readonly what: string,
    readonly afterMs: number,
    readonly attempts: number,
  ) {
    super(`${what}: no answer after ${attempts} attempt(s) in ${afterMs} ms`);
  }
}

/** The peer answered with a refusal (status code from the wire). */
export class RejectedError extends NtmError {
  override readonly name = 'RejectedError';
  override readonly code = 'rejected';
  override readonly expose = true;
  constructor(
    readonly what: string,
    readonly status: string,
  ) {
    super(`${what} refused: ${status}`);
  }
}

/** A configuration value is missing or malformed; `key` names it. */
export class ConfigError extends NtmError {
  override readonly name = 'ConfigError';
  override readonly code = 'config';
  override readonly expose = true;
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(`config ${key}: ${message}`);
  }
}

/** Bad input from a user or API client (maps to HTTP 400). */
export class InputError extends NtmError {
  override readonly name = 'InputError';
  override readonly code = 'bad_request';
  override readonly expose = true;
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** The named object does not exist (maps to HTTP 404). */
export class NotFoundError extends NtmError {
  override readonly name = 'NotFoundError';
  override readonly code = 'not_found';
  override readonly expose = true;
}

/** The request conflicts with the current state, e.g. a duplicate name (maps to HTTP 409). */
export class ConflictError extends NtmError {
  override readonly name = 'ConflictError';
  override readonly code = 'conflict';
  override readonly expose = true;
}

/** A stored chain or database does not verify (corruption, tampering). */
export class IntegrityError extends NtmError {
  override readonly name = 'IntegrityError';
  override readonly code = 'integrity';
}

/** A revocation the ledger holds (sticky on a shared ledger, docs/ledger.md) cannot be lifted by a DC. */
export class StickyRevocationError extends NtmError {
  override readonly name = 'StickyRevocationError';
  override readonly code = 'sticky_revocation';
  constructor(readonly id: string) {
    super(`${id} is revoked on the ledger, and a revocation there is permanent: the device needs a new identity`);
  }
}

/** An address pool has no free address left. */
export class PoolExhaustedError extends NtmError {
  override readonly name = 'PoolExhaustedError';
  override readonly code = 'pool_exhausted';
}

/** The daemon did not answer: it is not running, or not reachable. */
export class UnavailableError extends NtmError {
  override readonly name = 'UnavailableError';
  override readonly code = 'unavailable';
  override readonly expose = true;
}

/** The input data is wrong in a way the user must fix in the data, not the command line. */
export class DataError extends NtmError {
  override readonly name = 'DataError';
  override readonly code = 'data';
  override readonly expose = true;
}

/** What was asked was refused: revoked, expired, used up, not allowed. */
export class RefusedError extends NtmError {
  override readonly name = 'RefusedError';
  override readonly code = 'refused';
  override readonly expose = true;
}

/**
 * The DC refused a registration with an authenticated answer (docs/protocol.md §3.2): `reason` is the wire's refusal
 * reason ("pool-full", "key-revoked", …), `limit` the pool's size when it is full, `retryAfterS` when rate limited.
 */
export class RegistrationRefusedError extends NtmError {
  override readonly name = 'RegistrationRefusedError';
  override readonly code = 'registration_refused';
  override readonly expose = true;
  constructor(
    readonly reason: string,
    readonly limit = 0,
    readonly retryAfterS = 0,
  ) {
    super(`the DC refused the registration: ${refusalText(reason, limit, retryAfterS)}`);
  }

  /** Whether trying again later may succeed (an address may be freed, a limit refills): EX_TEMPFAIL, not EX_NOPERM. */
  get temporary(): boolean {
    return this.reason === 'pool-full' || this.reason === 'rate-limited';
  }
}

function refusalText(reason: string, limit: number, retryAfterS: number): string {
  switch (reason) {
    case 'pool-full':
      return `its address pool is full (${limit} addresses, all in use); ask its operator, or try again later`;
    case 'not-admitted':
      return 'it does not admit this terminal (join with an enrollment token or key first: ntm enroll)';
    case 'key-unknown':
      return 'it does not know this enrollment key';
    case 'key-revoked':
      return 'this enrollment key was revoked; ask for a new one';
    case 'key-expired':
      return 'this enrollment key has expired; ask for a new one';
    case 'key-used-up':
      return 'this enrollment key is used up; ask for a new one';
    case 'revoked':
      return 'this terminal was revoked';
    case 'rate-limited':
      return `too many new terminals from this address; try again in ${retryAfterS} s`;
    default:
      return reason;
  }
}

/** A household's DC has no address left for another device (HTTP 409; the message is the page's). */
export class HouseholdFullError extends NtmError {
  override readonly name = 'HouseholdFullError';
  override readonly code = 'conflict';
  override readonly expose = true;
  constructor(readonly limit: number) {
    super(`this home has reached ${limit} device${limit === 1 ? '' : 's'} (phones included): unpair a device or remove a phone to pair another`);
  }
}
