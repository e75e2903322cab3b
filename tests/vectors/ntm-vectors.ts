// Generator of this project's own test vectors (docs/protocol.md §2 Node Transaction, §3.4 Noise KK handshake,
// §3.3 sealed DATA/CONTROL frames, and every other message type of §3), deterministic: every key is keccak256 of a
// label, every "random" value fixed.
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
import {
  HINT,
  HintReason,
  NAT_PROBE,
  REGISTRATION_REQUEST,
  REGISTRATION_RESPONSE,
  channelKeys,
  encodeHint,
  encodeNatProbe,
  encodeRegistrationBody,
  encodeRegistrationRequest,
  encodeRegistrationCookie,
  mac1Key,
  requestMac1,
  REGISTRATION_COOKIE,
  encodeRegistrationResponseHeader,
  registrationKey,
  encodeRegistrationRefusal,
} from '../../agent/src/protocol/registration.js';
import { Ctl, Status, encodeControl, type ControlMessage, type Route } from '../../agent/src/protocol/control.js';
import { Peer, encodePeer, type PeerMessage, type TerminalInfo } from '../../agent/src/protocol/peer.js';
import { PEER_FRAME, PeerSealer } from '../../agent/src/protocol/peer-frame.js';
import { HELLO, encodeHello, signServerRecord } from '../../agent/src/protocol/dc-record.js';
import {
  RELAY_BIND,
  RELAY_BIND_ACK,
  RELAY_FRAME,
  RS_PING,
  encodeRelayBind,
  encodeRelayBindAck,
  encodeRelayChallenge,
  RELAY_CHALLENGE,
  encodeRsPing,
  relayFrame,
  signTicket,
} from '../../agent/src/protocol/relay.js';
import { PUNCH, encodePunch } from '../../agent/src/protocol/punch.js';
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

// ---------------------------------------------------------------------------------------------------------------
// Every other message type of docs/protocol.md: fixed inputs → the exact datagram (and, for sealed messages, the keys
// and the plaintext). `fields` are the inputs in JSON form (json()): bytes as hex, 64-bit integers as 0x-hex strings.

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** JSON form of message fields: bytes → hex, bigint → "0x…" (16 digits), undefined members dropped. */
export function json(x: unknown): Json {
  if (x === null || typeof x === 'boolean' || typeof x === 'number' || typeof x === 'string') return x;
  if (typeof x === 'bigint') return `0x${x.toString(16).padStart(16, '0')}`;
  if (x instanceof Uint8Array) return Buffer.from(x).toString('hex');
  if (Array.isArray(x)) return x.map(json);
  if (typeof x === 'object') {
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(x as Record<string, unknown>)) if (v !== undefined) out[k] = json(v);
    return out;
  }
  throw new Error(`vector: cannot express ${typeof x} in JSON`);
}

export interface MessageVector {
  name: string;
  /** The message as docs/protocol.md names it (the test decodes by this). */
  message: string;
  /** First byte of the datagram; null for the relay ticket, which travels inside other messages. */
  type: number | null;
  fields: Json;
  /** Keys a reader needs to check MACs or open sealed messages (hex). */
  keys?: Record<string, string>;
  /** Sealed messages: the plaintext before sealing (hex). */
  plaintext?: string;
  /** Sealed frames: the receiver index and counter in the header. */
  receiverIndex?: number;
  counter?: number;
  /** The exact bytes (hex). */
  packet: string;
}

/** The private keys of the message vectors' parties: keccak256 of these labels. */
export const PARTY_LABELS = {
  terminal: 'NTM1 vector: terminal',
  peer: 'NTM1 vector: terminal 2',
  dc: 'NTM1 vector: DC',
  dc2: 'NTM1 vector: DC 2',
  rs: 'NTM1 vector: RS',
} as const;

/** 16 deterministic bytes for nonces and salts. */
const label16 = (label: string): Buffer => labelKey(label).subarray(0, 16);

export function messageVectors(secp: Secp256k1, aead: Aead): { description: string; vectors: MessageVector[] } {
  const party = (k: keyof typeof PARTY_LABELS) => Identity.fromPrivateKey(labelKey(PARTY_LABELS[k]), secp);
  const t = party('terminal');
  const p = party('peer');
  const dc = party('dc');
  const dc2 = party('dc2');
  const rs = party('rs');
  const vectors: MessageVector[] = [];
  const add = (v: Omit<MessageVector, 'packet' | 'fields'> & { fields: unknown; packet: Uint8Array }): void => {
    vectors.push({ ...v, fields: json(v.fields), packet: hex(v.packet) });
  };
  const T0 = 1_700_000_000_000;
  const ntT = NT.encode(NT.sign(t, { dcId: dc.id, revoked: false, timestamp: T0 }));
  const ntP = NT.encode(NT.sign(p, { dcId: dc.id, revoked: false, timestamp: T0 + 1000 }));

  // §3.2 Registration Request (two: full, minimal) and Response.
  const kss = registrationKey(t.dh(dc.publicKey)!);
  const regFull = {
    terminalIndex: 0x0102_0304,
    txid: 0x1122_3344_5566_7788n,
    nonce: label16('NTM1 vector: nonce_t'),
    time: T0 + 500,
    nt: ntT,
    locals: [
      { family: 4 as const, address: '10.0.1.10', port: 40000 },
      { family: 6 as const, address: '2001:db8:10::10', port: 40000 },
    ],
    name: 'phone',
    token: Buffer.from('enrol-0001', 'ascii'),
  };
  // mac1 under SHA-256("NTM1 mac1" ‖ DC key); mac2 zeros without a regCookie, else under the cookie (§3.2).
  const m1 = mac1Key(dc.publicKey);
  const regKeys = { kss: hex(kss), mac1: hex(m1) };
  const fullPacket = encodeRegistrationRequest(regFull, kss, m1);
  add({ name: 'registration request: locals, name and enrollment token', message: 'REGISTRATION_REQUEST', type: REGISTRATION_REQUEST, fields: regFull, keys: regKeys, packet: fullPacket });
  const regMin = { ...regFull, txid: 0x0000_0000_0000_0001n, terminalIndex: 0xffff_ffff, time: T0 + 600, locals: [], name: '', token: Buffer.alloc(0) };
  add({ name: 'registration request: no locals, no name, no token', message: 'REGISTRATION_REQUEST', type: REGISTRATION_REQUEST, fields: regMin, keys: regKeys, packet: encodeRegistrationRequest(regMin, kss, m1) });
  const regCookie = label16('NTM1 vector: cookie');
  add({
    name: 'registration request echoing a cookie (mac2)',
    message: 'REGISTRATION_REQUEST',
    type: REGISTRATION_REQUEST,
    fields: regFull,
    keys: { ...regKeys, cookie: hex(regCookie) },
    packet: encodeRegistrationRequest(regFull, kss, m1, regCookie),
  });
  add({
    name: 'registration cookie (the DC under load)',
    message: 'REGISTRATION_COOKIE',
    type: REGISTRATION_COOKIE,
    fields: { terminalIndex: regFull.terminalIndex, requestMac1: requestMac1(fullPacket), cookie: regCookie },
    packet: encodeRegistrationCookie(regFull.terminalIndex, regCookie, requestMac1(fullPacket)),
  });
  const nonceDc = label16('NTM1 vector: nonce_dc');
  const [kT2Dc, kDc2T, kResp] = channelKeys(kss, regFull.nonce, nonceDc);
  const dcIndex = 0x0a0b_0c0d;
  const regBody = {
    txid: regFull.txid,
    status: Status.OK,
    v4: '198.18.1.2',
    v4Len: 24,
    v6: 'fd4e:544d:1::2',
    v6Len: 48,
    observed: { family: 4 as const, address: '203.0.113.2', port: 40000 },
    behindNat: true,
    keepaliveS: 20,
    dcTime: T0 + 520,
    relays: [{ id: rs.id, v4: { family: 4 as const, address: '192.0.2.66', port: 7200 }, v6: { family: 6 as const, address: '2001:db8:2::2', port: 7200 } }],
  };
  const body = encodeRegistrationBody(regBody);
  add({
    name: 'registration response: virtual addresses, observed mapping behind a NAT, one dual-stack RS',
    message: 'REGISTRATION_RESPONSE',
    type: REGISTRATION_RESPONSE,
    fields: { terminalIndex: regFull.terminalIndex, dcIndex, nonceDc, nonceT: regFull.nonce, body: regBody },
    keys: { kss: hex(kss), terminalToDc: hex(kT2Dc), dcToTerminal: hex(kDc2T), response: hex(kResp) },
    plaintext: hex(body),
    packet: Buffer.concat([encodeRegistrationResponseHeader(regFull.terminalIndex, dcIndex, nonceDc), aead.seal(kResp, 0, body)]),
  });

  // §3.2 A refusal: the same header with DC index 0 (no channel), the refusal body sealed under K_resp.
  const refusalNonceDc = label16('NTM1 vector: nonce_dc refusal');
  const refusalKeys = channelKeys(kss, regFull.nonce, refusalNonceDc);
  for (const refusal of [
    { txid: regFull.txid, reason: 'pool-full' as const, limit: 65_533, retryAfterS: 0 },
    { txid: regFull.txid, reason: 'key-revoked' as const, limit: 0, retryAfterS: 0 },
    { txid: regFull.txid, reason: 'rate-limited' as const, limit: 0, retryAfterS: 6 },
  ]) {
    const plain = encodeRegistrationRefusal(refusal);
    add({
      name: `registration response: refused (${refusal.reason})`,
      message: 'REGISTRATION_RESPONSE',
      type: REGISTRATION_RESPONSE,
      fields: { terminalIndex: regFull.terminalIndex, dcIndex: 0, nonceDc: refusalNonceDc, nonceT: regFull.nonce, body: refusal },
      keys: { kss: hex(kss), terminalToDc: hex(refusalKeys[0]), dcToTerminal: hex(refusalKeys[1]), response: hex(refusalKeys[2]) },
      plaintext: hex(plain),
      packet: Buffer.concat([encodeRegistrationResponseHeader(regFull.terminalIndex, 0, refusalNonceDc), aead.seal(refusalKeys[2], 0, plain)]),
    });
  }

  // §3.2 NAT probe and reply; HINT.
  add({ name: 'NAT probe', message: 'NAT_PROBE', type: NAT_PROBE, fields: { kind: 0, txid: regFull.txid, id: t.id }, packet: encodeNatProbe(0, regFull.txid, t.id) });
  for (const observed of [
    { family: 4 as const, address: '203.0.113.2', port: 40001 },
    { family: 6 as const, address: '2001:db8:10::10', port: 40000 },
  ]) {
    add({ name: `NAT probe reply (IPv${observed.family} mapping)`, message: 'NAT_PROBE', type: NAT_PROBE, fields: { kind: 1, txid: regFull.txid, id: t.id, observed }, packet: encodeNatProbe(1, regFull.txid, t.id, observed) });
  }
  add({ name: 'hint: the DC restarted', message: 'HINT', type: HINT, fields: { reason: HintReason.DC_RESTARTED, dcId: dc.id }, packet: encodeHint(HintReason.DC_RESTARTED, dc.id) });
  add({ name: 'hint: unknown session', message: 'HINT', type: HINT, fields: { reason: HintReason.UNKNOWN_SESSION, dcId: dc.id }, packet: encodeHint(HintReason.UNKNOWN_SESSION, dc.id) });

  // §3.5 Relay ticket (inside Route Directions and binds).
  const tunnelId = 0x0102_0304_0506_0708n;
  const ticketFields = {
    tunnelId,
    rsId: rs.id,
    endA: t.id,
    endB: p.id,
    expiresAt: T0 + 86_400_000,
    byteQuota: 10 * 1024 ** 3,
    packetQuota: 20_000_000,
    dcId: dc.id,
  };
  const ticket = signTicket(ticketFields, dc);
  add({ name: 'relay ticket signed by the DC', message: 'RELAY_TICKET', type: null, fields: ticketFields, packet: ticket });

  // §3.3 CONTROL: every message, sealed in the channel of the registration above (terminal → DC and DC → terminal).
  const clock = () => 0;
  const mk = (send: Buffer, recv: Buffer, local: number, remote: number, isInitiator: boolean) =>
    new TunnelKeypair({ packetType: CONTROL_TYPE, sendKey: send, receiveKey: recv, localIndex: local, remoteIndex: remote, isInitiator, createdAt: 0, clock, aead, limits: { rekeyAfterMs: Infinity, rejectAfterMs: Infinity } });
  const up = mk(kT2Dc, kDc2T, regFull.terminalIndex, dcIndex, true);
  const down = mk(kDc2T, kT2Dc, dcIndex, regFull.terminalIndex, false);
  const peerV = { peerId: p.id, peerPublicKey: p.publicKey, peerV4: '198.18.1.3', peerV6: 'fd4e:544d:1::3', peerName: 'laptop' };
  const routes: Array<[string, Route]> = [
    ['direct', { tunnelId, ...peerV, kind: 'direct', initiator: true, endpoints: [{ family: 4, address: '198.51.100.2', port: 7300 }], keepaliveS: 0 }],
    [
      'hole punching with the RS as fallback',
      { tunnelId, ...peerV, kind: 'holepunch', initiator: false, endpoints: [{ family: 4, address: '203.0.113.66', port: 41000 }], relay: { rsId: rs.id, endpoint: { family: 4, address: '192.0.2.66', port: 7200 }, ticket }, keepaliveS: 15 },
    ],
    ['through the RS', { tunnelId, ...peerV, kind: 'relay', initiator: false, endpoints: [], relay: { rsId: rs.id, endpoint: { family: 6, address: '2001:db8:2::2', port: 7200 }, ticket }, keepaliveS: 15 }],
  ];
  const tx = (n: number) => BigInt(0x7000 + n);
  const controls: Array<[string, 'up' | 'down', ControlMessage]> = [
    ['KEEPALIVE (DC → terminal behind a NAT)', 'down', { type: Ctl.KEEPALIVE, txid: tx(1), dcTime: T0 + 20_000 }],
    ['KEEPALIVE_ACK', 'up', { type: Ctl.KEEPALIVE_ACK, txid: tx(1) }],
    ['DIRECTION_REQUEST by ID', 'up', { type: Ctl.DIRECTION_REQUEST, txid: tx(2), target: { kind: 'id', id: p.id } }],
    ['DIRECTION_REQUEST by virtual IPv4', 'up', { type: Ctl.DIRECTION_REQUEST, txid: tx(3), target: { kind: 'v4', address: '198.18.1.3' } }],
    ['DIRECTION_REQUEST by virtual IPv6', 'up', { type: Ctl.DIRECTION_REQUEST, txid: tx(4), target: { kind: 'v6', address: 'fd4e:544d:1::3' } }],
    ['DIRECTION_REQUEST by name', 'up', { type: Ctl.DIRECTION_REQUEST, txid: tx(5), target: { kind: 'name', name: 'laptop' } }],
    ...routes.map(([what, route], i): [string, 'down', ControlMessage] => [`ROUTE_DIRECTION ${what}`, 'down', { type: Ctl.ROUTE_DIRECTION, txid: tx(2 + i), route }]),
    ['DIRECTION_ERROR (peer offline)', 'down', { type: Ctl.DIRECTION_ERROR, txid: tx(5), status: Status.OFFLINE, message: 'peer offline' }],
    ['ROUTE_ACK (the CN acknowledges a DC-initiated Route Direction)', 'up', { type: Ctl.ROUTE_ACK, txid: tx(6), tunnelId }],
    ['LOCATION_UPDATE after a move', 'up', { type: Ctl.LOCATION_UPDATE, txid: tx(7), locals: [{ family: 4, address: '100.64.0.10', port: 40000 }] }],
    ['LOCATION_ACK', 'down', { type: Ctl.LOCATION_ACK, txid: tx(7), observed: { family: 4, address: '192.0.2.66', port: 61000 }, behindNat: true }],
    ['RTT_REPORT', 'up', { type: Ctl.RTT_REPORT, txid: tx(8), rtts: [[rs.id, 12]] }],
    ['RESOLVE_REQUEST', 'up', { type: Ctl.RESOLVE_REQUEST, txid: tx(9), target: { kind: 'name', name: 'lamp' } }],
    ['RESOLVE_RESPONSE', 'down', { type: Ctl.RESOLVE_RESPONSE, txid: tx(9), status: Status.OK, id: p.id, v4: '198.18.1.3', v6: 'fd4e:544d:1::3', name: 'lamp' }],
    ['DEREGISTER', 'up', { type: Ctl.DEREGISTER, txid: tx(10) }],
    ['ACK', 'down', { type: Ctl.ACK, txid: tx(10) }],
    ['REVOKED', 'down', { type: Ctl.REVOKED, txid: tx(11) }],
    // `dig PTR _http._tcp.home.ntm` (id 0x1234, RD) and the household's empty answer to it (QR AA RD RA, NOERROR).
    ['DNS_QUERY', 'up', { type: Ctl.DNS_QUERY, txid: tx(12), message: Buffer.from('123401000001000000000000055f68747470045f74637004686f6d65036e746d00000c0001', 'hex') }],
    ['DNS_ANSWER', 'down', { type: Ctl.DNS_ANSWER, txid: tx(12), message: Buffer.from('123485800001000000000000055f68747470045f74637004686f6d65036e746d00000c0001', 'hex') }],
    ['PATH_REFRESH (a direct path went silent)', 'up', { type: Ctl.PATH_REFRESH, txid: tx(13), tunnelId, peerId: p.id }],
    [
      'PEER_ENDPOINTS (where the peer is now)',
      'down',
      { type: Ctl.PEER_ENDPOINTS, txid: tx(13), tunnelId, peerId: p.id, endpoints: [{ family: 4, address: '203.0.113.66', port: 24001 }] },
    ],
  ];
  for (const [what, dir, m] of controls) {
    const kp = dir === 'up' ? up : down;
    const counter = kp.sendCounter;
    const pt = encodeControl(m);
    const frame = kp.seal(pt, undefined, 0);
    if (typeof frame === 'string') throw new Error(`vector: seal refused: ${frame}`);
    add({
      name: `CONTROL ${what}`,
      message: 'CONTROL',
      type: CONTROL_TYPE,
      fields: m,
      keys: { sender: hex(dir === 'up' ? kT2Dc : kDc2T) },
      plaintext: hex(pt),
      receiverIndex: kp.remoteIndex,
      counter,
      packet: frame,
    });
  }

  // §3 PEER frames: DC ↔ DC, RS → DC, under HKDF(ECDH(sender, receiver), salt) with a fixed salt.
  const info = (id: Identity, name: string): TerminalInfo => ({
    id: id.id,
    publicKey: id.publicKey,
    v4: name === 'phone' ? '198.18.1.2' : '198.18.2.2',
    v6: name === 'phone' ? 'fd4e:544d:1::2' : 'fd4e:544d:2::2',
    name,
    observed: { family: 4, address: '203.0.113.2', port: 40000 },
    nat: 'eim',
    locals: [{ family: 4, address: '10.0.1.10', port: 40000 }],
    rsRtts: [[rs.id, 12]],
  });
  const pt0 = T0 + 2000;
  const peers: Array<[string, Identity, Identity, PeerMessage]> = [
    ['NT_ANNOUNCE (two Node Transactions)', dc, dc2, { type: Peer.NT_ANNOUNCE, txid: tx(20), time: pt0, entries: [ntT, ntP] }],
    ['PEER_INFO_REQUEST (DC_MN asks DC_CN)', dc, dc2, { type: Peer.PEER_INFO_REQUEST, txid: tx(21), time: pt0 + 1, tunnelId, target: { kind: 'id', id: p.id }, requester: info(t, 'phone') }],
    ['PEER_INFO_RESPONSE with the route', dc2, dc, { type: Peer.PEER_INFO_RESPONSE, txid: tx(21), time: pt0 + 2, status: Status.OK, message: '', route: routes[1]![1] }],
    ['PEER_INFO_RESPONSE refusal', dc2, dc, { type: Peer.PEER_INFO_RESPONSE, txid: tx(22), time: pt0 + 3, status: Status.NOT_FOUND, message: 'unknown peer' }],
    ['SYNC_REQUEST', dc, dc2, { type: Peer.SYNC_REQUEST, txid: tx(23), time: pt0 + 4, since: 17 }],
    ['ACK', dc2, dc, { type: Peer.ACK, txid: tx(23), time: pt0 + 5 }],
    ['ROUTE_UPDATE (a terminal moved)', dc, dc2, { type: Peer.ROUTE_UPDATE, txid: tx(24), time: pt0 + 6, tunnelId, target: p.id, mover: info(t, 'phone') }],
    [
      'LOAD_REPORT (RS → DC)',
      rs,
      dc,
      { type: Peer.LOAD_REPORT, txid: tx(25), time: pt0 + 7, tunnels: 3, capacity: 10_000, packetsPerS: 120, v4: { family: 4, address: '192.0.2.66', port: 7200 }, v6: { family: 6, address: '2001:db8:2::2', port: 7200 } },
    ],
    [
      'LOAD_REPORT (RS → DC) with the tunnels made from the DC\'s tickets',
      rs,
      dc,
      { type: Peer.LOAD_REPORT, txid: tx(26), time: pt0 + 8, tunnels: 4, capacity: 10_000, packetsPerS: 95, v4: { family: 4, address: '192.0.2.66', port: 7200 }, bound: 17 },
    ],
  ];
  const sealers = new Map<Identity, PeerSealer>();
  for (const [what, from, to, m] of peers) {
    let sealer = sealers.get(from);
    if (!sealer) {
      sealer = new PeerSealer(from, () => true, { salt: label16(`NTM1 vector: peer salt ${from.idHex}`), aead });
      sealers.set(from, sealer);
    }
    const pt = encodePeer(m);
    const frame = sealer.seal(to.publicKey, pt);
    add({
      name: `PEER ${what}`,
      message: 'PEER',
      type: PEER_FRAME,
      fields: m,
      keys: { senderPrivate: hex(from.exportPrivateKey()), receiverPrivate: hex(to.exportPrivateKey()) },
      plaintext: hex(pt),
      counter: Number(frame.readBigUInt64BE(53)),
      packet: frame,
    });
  }

  // HELLO with a DC's and an RS's signed server record.
  const dcRecord = { role: 'dc' as const, time: T0, endpoints: [{ family: 4 as const, address: '192.0.2.2', port: 7100 }, { family: 6 as const, address: '2001:db8:1::2', port: 7100 }], poolV4: '198.18.1.0/24', poolV6: 'fd4e:544d:1::/48' };
  add({ name: "HELLO with a DC's record, asking for an answer", message: 'HELLO', type: HELLO, fields: { wantAnswer: true, record: { id: dc.id, publicKey: dc.publicKey, ...dcRecord } }, packet: encodeHello(signServerRecord(dc, dcRecord), true) });
  const rsRecord = { role: 'rs' as const, time: T0, endpoints: [{ family: 4 as const, address: '192.0.2.66', port: 7200 }], poolV4: '', poolV6: '' };
  add({ name: "HELLO with an RS's record", message: 'HELLO', type: HELLO, fields: { wantAnswer: false, record: { id: rs.id, publicKey: rs.publicKey, ...rsRecord } }, packet: encodeHello(signServerRecord(rs, rsRecord), false) });

  // §3.5 RELAY_BIND from each end, its ACK, a RELAY frame, RS_PING / RS_PONG; PUNCH.
  add({ name: 'RELAY_BIND by end A', message: 'RELAY_BIND', type: RELAY_BIND, fields: { ticket, role: 0, timestamp: T0 + 3000 }, packet: encodeRelayBind(ticket, 0, T0 + 3000, t) });
  add({ name: 'RELAY_BIND by end B', message: 'RELAY_BIND', type: RELAY_BIND, fields: { ticket, role: 1, timestamp: T0 + 3001 }, packet: encodeRelayBind(ticket, 1, T0 + 3001, p) });
  for (const a of [
    { tunnelId, ok: true, peerBound: false, observed: { family: 4 as const, address: '203.0.113.2', port: 40000 } },
    { tunnelId, ok: true, peerBound: true, observed: { family: 6 as const, address: '2001:db8:10::10', port: 40000 } },
    { tunnelId, ok: false, peerBound: false, observed: { family: 4 as const, address: '203.0.113.66', port: 41000 } },
  ]) {
    add({ name: `RELAY_BIND_ACK ${a.ok ? 'accepted' : 'refused'}${a.peerBound ? ', other end bound' : ''}`, message: 'RELAY_BIND_ACK', type: RELAY_BIND_ACK, fields: a, packet: encodeRelayBindAck(a) });
  }
  // The RS's return-routability challenge to a bind from a new address, and the bind again with the cookie echoed.
  const cookie = Buffer.from('c0c1c2c3c4c5c6c7c8c9cacbcccdcecf', 'hex');
  add({ name: 'RELAY_CHALLENGE to a bind from a new address', message: 'RELAY_CHALLENGE', type: RELAY_CHALLENGE, fields: { tunnelId, cookie }, packet: encodeRelayChallenge({ tunnelId, cookie }) });
  add({
    name: 'RELAY_BIND by end A echoing the challenge cookie',
    message: 'RELAY_BIND',
    type: RELAY_BIND,
    fields: { ticket, role: 0, timestamp: T0 + 3002, cookie },
    packet: encodeRelayBind(ticket, 0, T0 + 3002, t, cookie),
  });
  const inner = Buffer.from('04000000556677880000000000000000', 'hex');
  add({ name: 'RELAY frame carrying a DATA frame header (the RS forwards it unchanged)', message: 'RELAY', type: RELAY_FRAME, fields: { tunnelId, inner }, packet: relayFrame(tunnelId, inner) });
  add({ name: 'RS_PING', message: 'RS_PING', type: RS_PING, fields: { kind: 0, nonce: 0x0102_0304_0a0b_0c0dn, loadPermille: 0 }, packet: encodeRsPing(0, 0x0102_0304_0a0b_0c0dn) });
  add({ name: 'RS_PONG at 25 % load', message: 'RS_PING', type: RS_PING, fields: { kind: 1, nonce: 0x0102_0304_0a0b_0c0dn, loadPermille: 250 }, packet: encodeRsPing(1, 0x0102_0304_0a0b_0c0dn, 250) });
  const pongCookie = Buffer.from(keccak256(Buffer.from('rs pong cookie'))).subarray(0, 16);
  add({ name: 'RS_PING asking for the cookie (padded)', message: 'RS_PING', type: RS_PING, fields: { kind: 0, nonce: 0x0102_0304_0a0b_0c0en, loadPermille: 0, cookie: Buffer.alloc(16) }, packet: encodeRsPing(0, 0x0102_0304_0a0b_0c0en, 0, Buffer.alloc(16)) });
  add({ name: 'RS_PONG with the cookie for the sender', message: 'RS_PING', type: RS_PING, fields: { kind: 1, nonce: 0x0102_0304_0a0b_0c0en, loadPermille: 250, cookie: pongCookie }, packet: encodeRsPing(1, 0x0102_0304_0a0b_0c0en, 250, pongCookie) });
  add({ name: 'PUNCH', message: 'PUNCH', type: PUNCH, fields: { tunnelId, senderId: t.id }, packet: encodePunch(tunnelId, t.id) });

  return {
    description:
      'Every message type of docs/protocol.md not covered by the other files, from fixed inputs. Parties: private key = keccak256(label) for the labels in PARTY_LABELS of ntm-vectors.ts (terminal, its peer, two DCs, an RS); nonces and salts are the first 16 bytes of keccak256 of a label; signatures are RFC 6979. fields: the message as the decoder returns it (bytes hex, 64-bit integers "0x" + 16 hex digits). Sealed messages (REGISTRATION_RESPONSE, CONTROL, PEER) also give the keys and the plaintext; CONTROL frames use the channel keys of the registration vector, in order (counters from 0 per direction).',
    vectors,
  };
}

export interface AllOwnVectors {
  nodeTransactions: ReturnType<typeof nodeTransactionVectors>;
  noise: { description: string; vectors: NoiseVector[] };
  sealedFrames: ReturnType<typeof sealedFrameVectors>;
  messages: ReturnType<typeof messageVectors>;
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
    messages: messageVectors(secp, aead),
  };
}

export const OWN_VECTOR_FILES = {
  nodeTransactions: 'ntm-node-transaction.json',
  noise: 'ntm-noise-kk.json',
  sealedFrames: 'ntm-sealed-frames.json',
  messages: 'ntm-messages.json',
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
