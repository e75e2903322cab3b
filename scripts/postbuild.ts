// After tsc: makes the `ntm` entry point executable, copies the web UI's static files next to its compiled scripts and
// compiles the Solidity contracts.
import { chmodSync, cpSync, existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { buildContracts } from './contracts.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const bin = join(ROOT, 'dist/agent/src/cmd/ntm.js');
if (existsSync(bin)) chmodSync(bin, 0o755);

const clientSrc = join(ROOT, 'web-ui/client');
const clientOut = join(ROOT, 'dist/web-ui/client');
if (existsSync(clientSrc)) {
  for (const name of readdirSync(clientSrc)) {
    if (/\.(html|css|svg|png|ico|webmanifest)$/.test(name)) cpSync(join(clientSrc, name), join(clientOut, name));
  }
}

// The Solidity contracts (docs/ledger.md): ABI and bytecode into dist/contracts/, from the pinned solc.
buildContracts(ROOT);
