// Exit codes of `ntm`, after BSD sysexits.h (also used by Postfix, sendmail and systemd's unit docs): a script or an
// orchestrator tells "you called it wrong" from "the daemon is not there" from "it said no" without parsing text.
import {
  ConfigError,
  DataError,
  DeadlineExceededError,
  InputError,
  IntegrityError,
  NotFoundError,
  NtmError,
  RefusedError,
  RegistrationRefusedError,
  RejectedError,
  UnavailableError,
} from '../types/errors.js';

export const Exit = {
  OK: 0,
  /** EX_USAGE: bad command line (unknown option, missing argument). */
  USAGE: 64,
  /** EX_DATAERR: the input data is wrong (a CSV row, a token, a registry that does not verify). */
  DATA: 65,
  /** EX_NOINPUT: a named input file or object does not exist. */
  NO_INPUT: 66,
  /** EX_UNAVAILABLE: the daemon or server does not answer (not running, unreachable). */
  UNAVAILABLE: 69,
  /** EX_SOFTWARE: a bug (an unexpected exception). */
  SOFTWARE: 70,
  /** EX_TEMPFAIL: refused for now (the DC's address pool is full, a rate limit): trying later may work. */
  TEMPFAIL: 75,
  /** EX_NOPERM: refused (a revoked or expired key, a refusal from the DC). */
  REFUSED: 77,
  /** EX_CONFIG: the configuration is wrong. */
  CONFIG: 78,
} as const;

/** The paragraph every `--help` ends with. */
export const EXIT_HELP = `Exit status: 0 done; 64 usage error; 65 bad input data (some rows/values refused); 66 input
not found; 69 daemon or server unavailable; 70 internal error; 75 refused for now (the DC's address pool is
full, rate limited: try later); 77 refused (revoked, expired, not allowed); 78 configuration error.
`;

export function exitCodeOf(e: unknown): number {
  if (e instanceof UnavailableError || e instanceof DeadlineExceededError) return Exit.UNAVAILABLE;
  if (e instanceof RegistrationRefusedError) return e.temporary ? Exit.TEMPFAIL : Exit.REFUSED;
  if (e instanceof RefusedError || e instanceof RejectedError) return Exit.REFUSED;
  if (e instanceof DataError || e instanceof IntegrityError) return Exit.DATA;
  if (e instanceof NotFoundError) return Exit.NO_INPUT;
  if (e instanceof ConfigError) return Exit.CONFIG;
  if (e instanceof InputError) return Exit.USAGE;
  if (e instanceof NtmError) return Exit.SOFTWARE;
  // Node's own errors for files named on the command line.
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return Exit.NO_INPUT;
  if (code === 'EACCES' || code === 'EPERM') return Exit.REFUSED;
  return Exit.SOFTWARE;
}
