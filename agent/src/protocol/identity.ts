// NTM identities (docs/protocol.md §1, paper §2.1): a secp256k1 key pair whose ID is an EVM address, domain-tagged
// recoverable signatures over keccak256(tag ‖ body), and the identity file (JSON, mode 0600, written atomically).

import { randomBytes } from 'node:crypto';
import { open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { IdentityFileError } from '../crypto/errors.js';
import { keccak256Parts, parseHex, toHex, tryParseHex } from '../crypto/hex.js';
import {
  compressUncompressed,
  defaultSecp256k1,
  ID_LENGTH,
  idFromUncompressed,
  KeyPair,
  PRIVATE_KEY_LENGTH,
  PUBLIC_KEY_UNCOMPRESSED_LENGTH,
  randomPrivateKey,
  SIGNATURE_LENGTH,
  type Secp256k1,
} from '../crypto/secp256k1.js';

/** Domain tags of docs/protocol.md §1: a signature made for one purpose never verifies for another. */
export const DomainTag = {
  nodeTransaction: 'NTM1 node-transaction',
  dcRecord: 'NTM1 dc-record',
  relayTicket: 'NTM1 relay-ticket',
  relayBind: 'NTM1 relay-bind',
} as const;
export type DomainTag = (typeof DomainTag)[keyof typeof DomainTag];

const TAG_BYTES: ReadonlyMap<string, Buffer> = new Map(Object.values(DomainTag).map((t) => [t, Buffer.from(t, 'ascii')]));

function tagBytes(tag: DomainTag): Buffer {
  const b = TAG_BYTES.get(tag);
  if (b === undefined) throw new RangeError(`unknown domain tag: ${String(tag)}`);
  return b;
}

/** keccak256(tag ‖ body): the 32-byte digest every NTM signature covers. `body` is borrowed; `out` caller-owned. */
export function domainDigest(tag: DomainTag, body: Uint8Array, out?: Buffer): Buffer {
  return keccak256Parts([tagBytes(tag), body], out);
}

/** Who signed: the recovered key (33-byte compressed) and its ID. */
export interface Signer {
  readonly publicKey: Buffer;
  readonly id: Buffer;
}

/**
 * Recovers the signer of `body` under `tag` from a 65-byte signature; null when the signature is malformed, high-s,
 * has v ∉ {27, 28}, or recovers nothing. Never throws on its inputs.
 */
export function recoverSigner(tag: DomainTag, body: Uint8Array, signature: Uint8Array, impl: Secp256k1 = defaultSecp256k1): Signer | null {
  if (!(signature instanceof Uint8Array) || signature.length !== SIGNATURE_LENGTH || !(body instanceof Uint8Array)) return null;
  const full = impl.recover(signature, domainDigest(tag, body), false);
  if (full === null) return null;
  return { publicKey: compressUncompressed(full), id: idFromUncompressed(full) };
}

/** True when `signature` over (tag, body) recovers to the 20-byte `expectedId` (what an EVM contract checks). */
export function verifyBySigner(tag: DomainTag, body: Uint8Array, signature: Uint8Array, expectedId: Uint8Array, impl: Secp256k1 = defaultSecp256k1): boolean {
  if (!(expectedId instanceof Uint8Array) || expectedId.length !== ID_LENGTH) return false;
  const signer = recoverSigner(tag, body, signature, impl);
  return signer !== null && signer.id.equals(expectedId);
}

/** True when `signature` over (tag, body) is by `publicKey` (33 or 65 bytes) and its v recovers that key. */
export function verifyDomain(tag: DomainTag, body: Uint8Array, signature: Uint8Array, publicKey: Uint8Array, impl: Secp256k1 = defaultSecp256k1): boolean {
  const signer = recoverSigner(tag, body, signature, impl);
  if (signer === null || !(publicKey instanceof Uint8Array)) return false;
  if (publicKey.length === PUBLIC_KEY_UNCOMPRESSED_LENGTH) return compressUncompressed(publicKey).equals(signer.publicKey);
  return signer.publicKey.equals(publicKey);
}

/** What an identity file holds. Public fields are redundant, checked on load to catch a corrupted or mixed-up file. */
interface IdentityFileV1 {
  version: 1;
  kind: 'ntm-identity';
  privateKey: string;
  publicKey: string;
  id: string;
}

export interface LoadOptions {
  /** Refuse files readable or writable by group/others, as ssh does for keys (default true). */
  readonly strictPermissions?: boolean;
  readonly impl?: Secp256k1;
}

/** An NTM identity: terminal, DC or RS. A KeyPair (so Noise can use it as a static key) plus NTM signing and files. */
/** Peers whose static-static DH an identity keeps (Identity.staticDh): 32 bytes and a 66-character key each. */
export const STATIC_DH_PEERS = 1024;

export class Identity extends KeyPair {
  /** staticDh's results by the peer key's hex, oldest first. */
  readonly #staticDh = new Map<string, Buffer>();

  static override generate(impl: Secp256k1 = defaultSecp256k1): Identity {
    const k = randomPrivateKey(impl);
    try {
      return new Identity(k, impl);
    } finally {
      k.fill(0);
    }
  }

  /** From 32 bytes (copied) or their hex. Throws InvalidPrivateKeyError / InvalidHexError. */
  static override fromPrivateKey(privateKey: Uint8Array | string, impl: Secp256k1 = defaultSecp256k1): Identity {
    if (typeof privateKey !== 'string') return new Identity(privateKey, impl);
    const k = parseHex(privateKey, PRIVATE_KEY_LENGTH, 'private key');
    try {
      return new Identity(k, impl);
    } finally {
      k.fill(0);
    }
  }

  /**
   * DH(our static key, a peer's static key), kept per peer as wireguard-go keeps each peer's precomputedStaticStatic
   * (device/peer.go, device/noise-protocol.go): every new tunnel to the same peer (one per Direction Request) and every registration with the
   * same DC would compute the same ECDH again. At most STATIC_DH_PEERS peers are kept, the first one kept dropped
   * first. Returns a copy, the caller's to wipe; null when the peer's key is not a valid point.
   */
  staticDh(peerPublicKey: Uint8Array): Buffer | null {
    const key = Buffer.from(peerPublicKey.buffer, peerPublicKey.byteOffset, peerPublicKey.byteLength).toString('hex');
    let x = this.#staticDh.get(key);
    if (x === undefined) {
      const d = this.dh(peerPublicKey);
      if (d === null) return null;
      if (this.#staticDh.size >= STATIC_DH_PEERS) {
        const [oldest, secret] = this.#staticDh.entries().next().value!;
        secret.fill(0);
        this.#staticDh.delete(oldest);
      }
      this.#staticDh.set(key, d);
      x = d;
    }
    return Buffer.from(x);
  }

  override destroy(): void {
    for (const x of this.#staticDh.values()) x.fill(0);
    this.#staticDh.clear();
    super.destroy();
  }

  /** 65-byte signature of keccak256(tag ‖ body). */
  sign(tag: DomainTag, body: Uint8Array, out?: Buffer): Buffer {
    return this.signDigest(domainDigest(tag, body), out);
  }

  /**
   * Writes the identity file atomically: a temporary file in the same directory created with mode 0600, fsynced,
   * renamed over `path`, then the directory fsynced. A crash leaves either the old file or the new one.
   * `durable: false` skips both fsyncs for a caller that writes thousands and syncs the filesystem once after
   * (`ntm provision`); the rename still keeps the file whole for the process, not for a power loss until then.
   */
  async save(path: string, opts: { readonly durable?: boolean } = {}): Promise<void> {
    const durable = opts.durable ?? true;
    const priv = this.exportPrivateKey();
    const doc: IdentityFileV1 = { version: 1, kind: 'ntm-identity', privateKey: toHex(priv), publicKey: toHex(this.publicKey), id: this.idHex };
    priv.fill(0);
    const dir = dirname(path);
    const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      const fh = await open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(`${JSON.stringify(doc, null, 2)}\n`, 'utf8');
        await fh.chmod(0o600); // the umask may have narrowed it already; never widen
        if (durable) await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw new IdentityFileError(path, `cannot write: ${(e as Error).message}`);
    }
    if (!durable) return;
    try {
      const dh = await open(dir, 'r');
      try {
        await dh.sync();
      } finally {
        await dh.close();
      }
    } catch {
      // Some filesystems refuse fsync on a directory; the rename itself is already atomic.
    }
  }

  /** Reads and checks an identity file. Throws IdentityFileError (unreadable, unsafe mode, malformed, inconsistent). */
  static async load(path: string, opts: LoadOptions = {}): Promise<Identity> {
    const impl = opts.impl ?? defaultSecp256k1;
    let text: string;
    try {
      if (opts.strictPermissions ?? true) {
        const st = await stat(path);
        if ((st.mode & 0o077) !== 0) {
          throw new IdentityFileError(path, `mode ${(st.mode & 0o777).toString(8)} lets others read it; chmod 600`);
        }
      }
      text = await readFile(path, 'utf8');
    } catch (e) {
      if (e instanceof IdentityFileError) throw e;
      throw new IdentityFileError(path, `cannot read: ${(e as Error).message}`);
    }
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      throw new IdentityFileError(path, 'not JSON');
    }
    const d = doc as Partial<IdentityFileV1> | null;
    if (d === null || typeof d !== 'object' || d.version !== 1 || d.kind !== 'ntm-identity' || typeof d.privateKey !== 'string') {
      throw new IdentityFileError(path, 'not an ntm-identity version 1 document');
    }
    const priv = tryParseHex(d.privateKey, PRIVATE_KEY_LENGTH);
    if (priv === null || !impl.isValidPrivateKey(priv)) throw new IdentityFileError(path, 'privateKey is not a valid secp256k1 key');
    const identity = new Identity(priv, impl);
    priv.fill(0);
    if (d.publicKey !== undefined && d.publicKey.toLowerCase() !== toHex(identity.publicKey)) {
      throw new IdentityFileError(path, 'publicKey does not match privateKey');
    }
    if (d.id !== undefined && d.id.toLowerCase() !== identity.idHex) throw new IdentityFileError(path, 'id does not match privateKey');
    return identity;
  }
}
