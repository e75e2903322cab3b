// The one-time setup code on disk: created at the agent's first start (or by the ISP's provisioning, which prints it
// on the subscriber's letter), read at every start until the owner has set a password, then deleted.
import { readFileSync, rmSync, writeFileSync, mkdirSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
import { generateSetupCode, normaliseSetupCode } from './auth.js';

/** The code in `path`, creating the file (mode 0600, written atomically) with a fresh code when absent. */
export function loadOrCreateSetupCode(path: string): string {
  try {
    const text = readFileSync(path, 'utf8').trim();
    if (normaliseSetupCode(text).length >= 8) return text;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const code = generateSetupCode();
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, code + '\n', { mode: 0o600 });
  renameSync(tmp, path);
  return code;
}

/** After setup the code is spent: remove the file so it is not mistaken for a valid one. */
export function removeSetupCode(path: string): void {
  rmSync(path, { force: true });
}
