// What every `ntm` role needs at start: identities on disk, the DC reference format, logging, clean shutdown.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { Identity } from '../protocol/identity.js';
import { parseEndpoint } from '../protocol/endpoint.js';
import { idFromPublicKey, defaultSecp256k1, formatId } from '../crypto/secp256k1.js';
import { tryParseHex } from '../crypto/hex.js';
import { ConfigError } from '../types/errors.js';
import type { Endpoint } from '../types/net.js';
import type { SessionLimits } from '../crypto/session.js';
import type { Logger } from '../util/log.js';
import { securePrivateDir } from '../store/private-dir.js';

export function resolveIn(dir: string, file: string): string {
  return isAbsolute(file) ? file : join(dir, file);
}

/** Loads the identity file, creating a fresh identity (mode 0600) the first time. */
export async function loadOrCreateIdentity(path: string): Promise<Identity> {
  if (existsSync(path)) return Identity.load(path);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const id = Identity.generate();
  await id.save(path);
  return id;
}

/** Makes the role's data directory private (0700, files 0600) before anything in it is read, logging each fix. */
export function securedDataDir(dir: string, log: Logger): string {
  for (const f of securePrivateDir(dir)) {
    log.warn('a secret file was readable by other local users: its mode is fixed; treat what it held as possibly seen', { file: f.path, was: f.was, now: f.now });
  }
  return dir;
}

/** A DC as terminals know it: its public key (the ID is its hash) and address: "<66 hex digits>@addr:port". */
export interface DcReference {
  readonly id: Buffer;
  readonly idHex: string;
  readonly publicKey: Buffer;
  readonly endpoint: Endpoint;
}

export function parseDcRef(text: string, key = 'terminal.dc'): DcReference {
  const at = text.indexOf('@');
  const pub = at > 0 ? tryParseHex(text.slice(0, at), 33) : null;
  if (!pub || !defaultSecp256k1.isValidPublicKey(pub))
    throw new ConfigError(key, 'must be <DC public key: 66 hex digits>@addr:port (`ntm dc --print-id` shows it)');
  let endpoint: Endpoint;
  try {
    endpoint = parseEndpoint(text.slice(at + 1));
  } catch (e) {
    throw new ConfigError(key, (e as Error).message);
  }
  const id = idFromPublicKey(pub);
  return { id, idHex: formatId(id), publicKey: pub, endpoint };
}

/** The tunnel keypair lifetimes of a terminal's config (rekey must come before reject, or every keypair dies unrenewed). */
export function tunnelLimits(rekeyAfterMs: number, rejectAfterMs: number): Pick<SessionLimits, 'rekeyAfterMs' | 'rejectAfterMs'> {
  if (rejectAfterMs <= rekeyAfterMs) throw new ConfigError('terminal.rejectAfterMs', `must exceed terminal.rekeyAfterMs (${rekeyAfterMs})`);
  return { rekeyAfterMs, rejectAfterMs };
}

export function formatDcRef(publicKey: Uint8Array, endpoint: Endpoint): string {
  const host = endpoint.family === 6 ? `[${endpoint.address}]` : endpoint.address;
  return `${Buffer.from(publicKey).toString('hex')}@${host}:${endpoint.port}`;
}

/** Runs `stop` once on SIGINT/SIGTERM, then exits; a second signal exits at once. */
export function onShutdown(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (sig: string) => {
    if (stopping) process.exit(130);
    stopping = true;
    log.info('stopping', { signal: sig });
    stop()
      .catch((e: unknown) => log.error('shutdown failed', { err: e }))
      .finally(() => process.exit(0));
  };
  process.on('SIGINT', () => handler('SIGINT'));
  process.on('SIGTERM', () => handler('SIGTERM'));
}

/** One line of JSON on stdout: scripts and tests wait for it to know the daemon is ready. */
export function announce(obj: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

/** This process's memory for `status` (MiB, one decimal): what an operator compares with the VM's size. */
export function processMemory(): Record<string, number> {
  const m = process.memoryUsage();
  const mib = (b: number) => Math.round((b / 1048576) * 10) / 10;
  return { rssMiB: mib(m.rss), heapUsedMiB: mib(m.heapUsed), heapTotalMiB: mib(m.heapTotal), externalMiB: mib(m.external), arrayBuffersMiB: mib(m.arrayBuffers) };
}
