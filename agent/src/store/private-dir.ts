// A role's data directory holds secrets (identity keys, every paired appliance's private key in agent.db, session
// hashes, CSRF tokens, the setup code, the web UI's TLS key): it is 0700 and its files 0600, owned by this process's
// user (issue 11, item 7). Checked at every start. Too-open modes are fixed, with a warning naming each file: the
// exposure, if any, has already happened, refusing would leave a household without its gateway over a mode bit this
// process can set itself, and the warning tells the operator what was open (and so which keys to consider exposed).
// A file owned by another user is refused: someone else could have written it, and fixing its mode would not say who.
import { chmodSync, closeSync, lstatSync, mkdirSync, openSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { NtmError } from '../types/errors.js';

export const DIR_MODE = 0o700;
export const FILE_MODE = 0o600;

/** A file or directory in a data directory belongs to another user. */
export class ForeignOwnerError extends NtmError {
  override readonly name = 'ForeignOwnerError';
  override readonly code = 'foreign_owner';
  constructor(
    readonly path: string,
    readonly uid: number,
  ) {
    super(`${path} belongs to uid ${uid}, not to this process (uid ${process.getuid?.() ?? '?'}): refusing to use secrets someone else may have written; check it and chown it`);
  }
}

export interface ModeFix {
  readonly path: string;
  readonly was: string;
  readonly now: string;
}

const octal = (m: number): string => (m & 0o777).toString(8).padStart(3, '0');

function checkOwner(path: string, uid: number): void {
  const me = process.getuid?.();
  if (me !== undefined && uid !== me) throw new ForeignOwnerError(path, uid);
}

/**
 * Creates `dir` (0700) if needed, then makes it 0700 and every regular file directly in it 0600. Returns what it
 * changed (for the caller to log). Sockets and subdirectories are left alone (sockets get their own modes).
 */
export function securePrivateDir(dir: string): ModeFix[] {
  mkdirSync(dir, { recursive: true, mode: DIR_MODE });
  const fixes: ModeFix[] = [];
  const fix = (path: string, mode: number, want: number): void => {
    if ((mode & 0o777) === want) return;
    chmodSync(path, want);
    fixes.push({ path, was: octal(mode), now: octal(want) });
  };
  const d = statSync(dir);
  checkOwner(dir, d.uid);
  fix(dir, d.mode, DIR_MODE);
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = lstatSync(path);
    if (!st.isFile()) continue;
    checkOwner(path, st.uid);
    fix(path, st.mode, FILE_MODE);
  }
  return fixes;
}

/**
 * Creates `path` empty with mode 0600 if it does not exist, so that a program that creates it later (SQLite, which
 * also gives its -wal and -shm files the database's mode) never makes it readable by others, whatever the umask.
 */
export function precreatePrivateFile(path: string): void {
  closeSync(openSync(path, 'a', FILE_MODE));
}
