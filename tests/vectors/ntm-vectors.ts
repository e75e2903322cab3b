// Generator of this project's own test vectors (docs/protocol.md §2 Node Transaction, §3.4 Noise KK handshake,
// §3.3 sealed DATA/CONTROL frames), deterministic: every key is keccak256 of a label, every "random" value fixed.
// `node dist/tests/vectors/ntm-vectors.js --write` rewrites the checked-in JSON; ntm.test.ts regenerates with
// every implementation (native and noble) and requires byte equality with what is checked in.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Aead } from '../../agent/src/crypto/aead.js';
import { keccak256, toHex } from '../../agent/src/crypto/hex.js';
import { consumeRequest, consumeResponse, createRequest, createResponse, tai64n, type NoiseSuite } from '../../agent/src/crypto/noise.js';
import { KeyPair, type Secp256k1 } from '../../agent/src/crypto/secp256k1.js';
import { CONTROL_TYPE, DATA_TYPE, TunnelKeypair } from '../../agent/src/crypto/session.js';
import { Identity } from '../../agent/src/protocol/identity.js';
import * as NT from '../../agent/src/protocol/node-transaction.js';
import { VECTORS_DIR } from './load.js';

/** The deterministic private key of a vector role: keccak256(ASCII label). */
export function labelKey(label: string): Buffer {
  return keccak256(Buffer.from(label, 'ascii'));
}

const hex = (b: Uint8Array): string => toHex(b, false);

export interface NodeTransactionVector {
  name: string;
  privateKey: string;
  dcId: string;
  revoked: boolean;
  timestamp: number;
  id: string;
  publicKey: string;
  digest: string;
  encoding: string;
}

export function nodeTransactionVectors(impl: Secp256k1): { description: string; vectors: NodeTransactionVector[] } {
  const dc = Identity.fromPrivateKey(labelKey('NTM1 vector: DC'), impl);
  const cases: { name: string; key: Buffer; dcId: Buffer; revoked: boolean; timestamp: number }[] = [
    { name: 'terminal registers with its DC', key: labelKey('NTM1 vector: terminal'), dcId: dc.id, revoked: false, timestamp: 1_700_000_000_000 },
    { name: 'terminal revokes itself', key: labelKey('NTM1 vector: terminal'), dcId: dc.id, revoked: true, timestamp: 1_700_000_060_000 },
    { name: 'private key 1, zero DC id, timestamp 0', key: Buffer.from('00'.repeat(31) + '01', 'hex'), dcId: Buffer.alloc(20), revoked: false, timestamp: 0 },
    { name: 'largest timestamp a JS number holds (2^53 - 1)', key: labelKey('NTM1 vector: terminal 2'), dcId: dc.id, revoked: false, timestamp: Number.MAX_SAFE_INTEGER },
  ];
  const vectors = cases.map((c) => {
    const id = Identity.fromPrivateKey(c.key, impl);
    const nt = NT.sign(id, { dcId: c.dcId, revoked: c.revoked, timestamp: c.timestamp });
    return {
      name: c.name,
      privateKey: hex(c.key),
      dcId: hex(c.dcId),
      revoked: c.revoked,
      timestamp: c.timestamp,
      id: hex(id.id),
      publicKey: hex(id.publicKey),
      digest: hex(NT.digest(nt)),
      encoding: hex(NT.encode(nt)),
    };
  });
  return {
    description:
      "Node Transactions (docs/protocol.md §2). privateKey = keccak256(label) except 'private key 1'; signatures are RFC 6979 deterministic, so every implementation must reproduce them byte for byte. digest = keccak256(\"NTM1 node-transaction\" || encoding[0..83]).",
    vectors,
  };
}

export interface NoiseVector {
  protocolName: string;
  prologue: string;
  initiatorStatic: string;
  initiatorStaticPublic: string;
  responderStatic: string;
  responderStaticPublic: string;
  initiatorEphemeral: string;
  responderEphemeral: string;
  tunnelId: string;
  initiatorIndex: number;
  responderIndex: number;
  timestamp: string;
  tunnelRequest: string;
  tunnelResponse: string;
  handshakeHash: string;
  initiatorToResponderKey: string;
  responderToInitiatorKey: string;
}

/** One complete handshake with fixed keys; throws if the two sides disagree (the generator checks itself). */
export function noiseVector(suite: NoiseSuite): NoiseVector {
  const si = KeyPair.fromPrivateKey(labelKey('NTM1 vector: initiator static'), suite.secp);
  const sr = KeyPair.fromPrivateKey(labelKey('NTM1 vector: responder static'), suite.secp);
  const ei = KeyPair.fromPrivateKey(labelKey('NTM1 vector: initiator ephemeral'), suite.secp);
  const er = KeyPair.fromPrivateKey(labelKey('NTM1 vector: responder ephemeral'), suite.secp);
  const tunnelId = Buffer.from('0102030405060708', 'hex');
  const timestamp = tai64n(1_700_000_000_000);
  const initiatorIndex = 0x1122_3344;
  const responderIndex = 0x5566_7788;

  const req = createRequest({ localStatic: si, remoteStatic: sr.publicKey, tunnelId, senderIndex: initiatorIndex, timestamp, ephemeral: ei, suite });
  const hs = consumeRequest(req.packet, { localStatic: sr, remoteStatic: si.publicKey, suite });
  if (typeof hs === 'string') throw new Error(`vector: responder refused the request: ${hs}`);
  const res = createResponse(hs, { senderIndex: responderIndex, ephemeral: er });
  const fin = consumeResponse(req.state, res.packet);
  if (typeof fin === 'string') throw new Error(`vector: initiator refused the response: ${fin}`);
  if (!fin.keys.send.equals(res.keys.receive) || !fin.keys.receive.equals(res.keys.send) || !fin.keys.handshakeHash.equals(res.keys.handshakeHash)) {
    throw new Error('vector: the two sides derived different keys');
  }
  return {
    protocolName: 'Noise_KK_secp256k1_ChaChaPoly_SHA256',
    prologue: hex(Buffer.concat([Buffer.from('NTM1 tunnel', 'ascii'), tunnelId])),
    initiatorStatic: hex(si.exportPrivateKey()),
    initiatorStaticPublic: hex(si.publicKey),
    responderStatic: hex(sr.exportPrivateKey()),
    responderStaticPublic: hex(sr.publicKey),
    initiatorEphemeral: hex(ei.exportPrivateKey()),
    responderEphemeral: hex(er.exportPrivateKey()),
    tunnelId: hex(tunnelId),
    initiatorIndex,
    responderIndex,
    timestamp: hex(timestamp),
    tunnelRequest: hex(req.packet),
    tunnelResponse: hex(res.packet),
    handshakeHash: hex(fin.keys.handshakeHash),
    initiatorToResponderKey: hex(fin.keys.send),
    responderToInitiatorKey: hex(fin.keys.receive),
  };
}

export interface SealedFrameVector {
  name: string;
  type: number;
  sendKey: string;
  receiverIndex: number;
  counter: number;
  plaintext: string;
  packet: string;
}

/** Sealed frames under the keys of the Noise vector (so a reader can replay the whole tunnel start). */
export function sealedFrameVectors(aead: Aead, noise: NoiseVector): { description: string; vectors: SealedFrameVector[] } {
  const kI = Buffer.from(noise.initiatorToResponderKey, 'hex');
  const kR = Buffer.from(noise.responderToInitiatorKey, 'hex');
  const mk = (type: number, send: Buffer, recv: Buffer, local: number, remote: number): TunnelKeypair =>
    new TunnelKeypair({ packetType: type, sendKey: send, receiveKey: recv, localIndex: local, remoteIndex: remote, isInitiator: true, createdAt: 0, clock: () => 0, aead });
  const initiatorData = mk(DATA_TYPE, kI, kR, noise.initiatorIndex, noise.responderIndex);
  const responderData = mk(DATA_TYPE, kR, kI, noise.responderIndex, noise.initiatorIndex);
  // CONTROL runs under terminal↔DC channel keys, never the tunnel's: a distinct key, so no (key, nonce) is reused.
  const kChan = labelKey('NTM1 vector: channel key terminal->DC');
  const control = mk(CONTROL_TYPE, kChan, kR, 0x0000_0007, 0x0000_0009);
  const vectors: SealedFrameVector[] = [];
  const seal = (name: string, kp: TunnelKeypair, key: Buffer, plaintext: Buffer): void => {
    const counter = kp.sendCounter;
    const packet = kp.seal(plaintext, undefined, 0);
    if (typeof packet === 'string') throw new Error(`vector: seal refused: ${packet}`);
    vectors.push({ name, type: kp.packetType, sendKey: hex(key), receiverIndex: kp.remoteIndex, counter, plaintext: hex(plaintext), packet: hex(packet) });
  };
  seal('initiator keepalive (empty DATA), counter 0: confirms the keypair to the responder', initiatorData, kI, Buffer.alloc(0));
  seal('initiator DATA, counter 1: an IPv4 header fragment', initiatorData, kI, Buffer.from('4500001c000040004011f9cd0a0000010a000002', 'hex'));
  seal('responder DATA, counter 0', responderData, kR, Buffer.from('hello from behind the vCPE', 'ascii'));
  seal('CONTROL frame under a channel key (keccak256 label), counter 0: message type 1 and txid', control, kChan, Buffer.from('010000000000000001', 'hex'));
  return {
    description:
      'Sealed frames (docs/protocol.md §3.3): type || 0x000000 || receiver index (BE) || counter (uint64 BE) || ChaCha20-Poly1305(key, nonce = 0x00000000 || counter LE, empty AAD). DATA keys are the split keys of ntm-noise-kk.json; the CONTROL key is keccak256("NTM1 vector: channel key terminal->DC").',
    vectors,
  };
}

export interface AllOwnVectors {
  nodeTransactions: ReturnType<typeof nodeTransactionVectors>;
  noise: { description: string; vectors: NoiseVector[] };
  sealedFrames: ReturnType<typeof sealedFrameVectors>;
}

export function generateAll(secp: Secp256k1, aead: Aead): AllOwnVectors {
  const noise = noiseVector({ secp, aead });
  return {
    nodeTransactions: nodeTransactionVectors(secp),
    noise: {
      description:
        'One Noise_KK_secp256k1_ChaChaPoly_SHA256 handshake (docs/protocol.md §3.4) with fixed static and ephemeral keys (keccak256 of labels) and TAI64N of 1,700,000,000,000 ms. Both messages as sent on the wire and both split keys.',
      vectors: [noise],
    },
    sealedFrames: sealedFrameVectors(aead, noise),
  };
}

export const OWN_VECTOR_FILES = {
  nodeTransactions: 'ntm-node-transaction.json',
  noise: 'ntm-noise-kk.json',
  sealedFrames: 'ntm-sealed-frames.json',
} as const;

async function main(): Promise<void> {
  const { nativeAead } = await import('../../agent/src/crypto/aead.js');
  const { requireNativeSecp256k1 } = await import('../../agent/src/crypto/secp256k1.js');
  const all = generateAll(requireNativeSecp256k1(), nativeAead);
  for (const [k, file] of Object.entries(OWN_VECTOR_FILES)) {
    writeFileSync(join(VECTORS_DIR, file), `${JSON.stringify(all[k as keyof AllOwnVectors], null, 2)}\n`);
    console.log(`wrote ${file}`);
  }
}

if (process.argv.includes('--write')) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
