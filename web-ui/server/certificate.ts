// The web UI's TLS certificate (issue 11, item 2): self-signed, made by the agent at first start and kept in its data
// directory (key and certificate 0600). Nobody can vouch for a home gateway's LAN address, so the owner checks the
// certificate's SHA-256 fingerprint instead: the agent prints it at start and the page shows it in Settings. A new
// certificate is made only when the addresses the page is served on are no longer in it (the fingerprint changes,
// and the agent says so).
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { NtmError } from '../../agent/src/types/errors.js';

const run = promisify(execFile);

export const CERT_FILE = 'web-cert.pem';
export const KEY_FILE = 'web-key.pem';
/** Ten years: a home gateway's certificate must not expire under the family; it is pinned by fingerprint anyway. */
const DAYS = 3650;

export interface WebCertificate {
  readonly key: Buffer;
  readonly cert: Buffer;
  /** SHA-256 of the DER certificate, "AB:CD:…" (as browsers and `openssl x509 -fingerprint -sha256` show it). */
  readonly fingerprint: string;
  /** Made by this call (first start, or the addresses changed). */
  readonly created: boolean;
}

/** openssl could not make the certificate. */
export class CertificateError extends NtmError {
  override readonly name = 'CertificateError';
  override readonly code = 'certificate';
  constructor(readonly detail: string) {
    super(`cannot make the web UI's TLS certificate: ${detail}`);
  }
}

function covers(cert: X509Certificate, addresses: readonly string[]): boolean {
  return addresses.every((a) => (isIP(a) ? cert.checkIP(a) !== undefined : cert.checkHost(a) !== undefined));
}

/**
 * The certificate in `dir`, made (P-256 ECDSA, via openssl) when absent, unreadable, or not valid for `addresses`
 * (the IP addresses and names the page is served on; localhost and the loopback addresses are always in it).
 */
export async function loadOrCreateCertificate(dir: string, addresses: readonly string[]): Promise<WebCertificate> {
  const certPath = join(dir, CERT_FILE);
  const keyPath = join(dir, KEY_FILE);
  const names = [...new Set(['localhost', '127.0.0.1', '::1', ...addresses])];
  try {
    const cert = readFileSync(certPath);
    const key = readFileSync(keyPath);
    const x = new X509Certificate(cert);
    if (covers(x, names)) return { key, cert, fingerprint: x.fingerprint256, created: false };
  } catch {
    // Absent (first start) or damaged: made anew below; the caller reports the new fingerprint.
  }
  const san = names.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  const tmpKey = `${keyPath}.${process.pid}.tmp`;
  const tmpCert = `${certPath}.${process.pid}.tmp`;
  // The time bound is for a hung openssl only: in an emulated VM (the image test, TCG on a loaded host) its first run
  // took over 20 s, the bound before, and the agent's first start failed.
  try {
    await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-sha256',
      '-keyout', tmpKey, '-out', tmpCert, '-days', String(DAYS),
      '-subj', '/O=NTMobile agent/CN=household web UI', '-addext', `subjectAltName=${san}`,
    ], { timeout: 120_000 });
    chmodSync(tmpKey, 0o600);
    chmodSync(tmpCert, 0o600);
    renameSync(tmpKey, keyPath);
    renameSync(tmpCert, certPath);
  } catch (e) {
    rmSync(tmpKey, { force: true });
    rmSync(tmpCert, { force: true });
    throw new CertificateError((e as { stderr?: string }).stderr?.trim() || (e as Error).message);
  }
  const cert = readFileSync(certPath);
  return { key: readFileSync(keyPath), cert, fingerprint: new X509Certificate(cert).fingerprint256, created: true };
}
