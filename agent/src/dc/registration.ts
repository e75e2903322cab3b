// Registration at the DC (paper §2.2, Fig. 2; docs/protocol.md §3.2): a terminal's Registration Request is checked
// (freshness, its Node Transaction's key and signature, the MAC under the terminal–DC key), it gets its virtual
// addresses and a control channel, its Node Transaction goes to the registry with this turn's commit, and the answer
// leaves after it. The NAT in front of it is learnt from where the request came from and a probe to the second port.
import { randomPublicBytes } from '../crypto/random.js';
import type { Bind, Endpoint } from '../types/net.js';
import * as NT from '../protocol/node-transaction.js';
import { CONTROL_LIMITS, CONTROL_TYPE, TunnelKeypair } from '../crypto/session.js';
import { AEAD_TAG_LENGTH, defaultAead } from '../crypto/aead.js';
import { PUBLIC_KEY_UNCOMPRESSED_LENGTH, formatId, idFromUncompressed } from '../crypto/secp256k1.js';
import {
  channelKeys,
  checkMac1,
  checkRegistrationMac,
  decodeNatProbe,
  encodeRegistrationCookie,
  hasMac2,
  mac2Of,
  requestMac1,
  requestMac2,
  REGISTRATION_REQUEST_MIN,
  REQUEST_ID_OFFSET,
  decodeRegistrationRequest,
  encodeNatProbe,
  encodeRegistrationBody,
  encodeRegistrationRefusal,
  encodeRegistrationResponseHeader,
  registrationKey,
  RESPONSE_HEADER,
  type DecodedRegistrationRequest,
  type RefusalReason,
  type RelayEntry,
} from '../protocol/registration.js';
import { PoolExhaustedError } from '../types/errors.js';
import { Status } from '../protocol/control.js';
import { formatEndpoint, sameEndpoint } from '../protocol/endpoint.js';
import type { TerminalRecord } from './terminals.js';
import type { DcCore } from './core.js';
import type { ControlChannel } from './channel.js';
import { keep, keepRoom } from '../util/keep.js';
import type { EcResult } from './ec-workers.js';

/** A request handled again with its EC work done on a worker (ec-workers.ts), and what the first pass decided. */
interface Prepared extends EcResult {
  readonly overLimit: boolean;
}

/**
 * Scratch of the event loop (nothing here awaits between writing and reading them): a new ID's key uncompressed (its
 * ID check needs X‖Y, and its ECDH then parses it without a square root), and an answer's addresses as bytes.
 */
const scratchKey = Buffer.alloc(PUBLIC_KEY_UNCOMPRESSED_LENGTH);
const scratchV4 = new Uint8Array(4);
const scratchV6 = new Uint8Array(16);
const NO_RELAYS: readonly RelayEntry[] = [];

interface Probe {
  mapping?: Endpoint;
  rec?: TerminalRecord;
  regMapping?: Endpoint;
  at: number;
}

export class Registration {
  /** NAT probes by txid: the mapping the probe port saw, or the registration waiting for its probe. */
  private readonly probes = new Map<bigint, Probe>();

  constructor(
    private readonly dc: DcCore,
    private readonly channel: ControlChannel,
    private readonly probeBind: Bind,
  ) {
    channel.onLocation = (rec, from, locals, txid) => this.learnLocation(rec, from, locals, txid);
  }

  onRegistration(data: Buffer, from: Endpoint, bind: Bind, pre?: Prepared): void {
    const { dc } = this;
    // mac1 first (WireGuard §5.4.4): random garbage costs one HMAC and nothing else, not even a decode.
    if (data.length < REGISTRATION_REQUEST_MIN) return dc.drops.inc('reg-malformed');
    if (!checkMac1(data, dc.mac1Key)) return dc.drops.inc('reg-mac1');
    const idHex = formatId(data.subarray(REQUEST_ID_OFFSET, REQUEST_ID_OFFSET + 20));
    // A worker (issue 15) reads the row first: another worker may have written it since (a terminal sent here now).
    let rec = dc.opts.worker ? dc.terminals.refresh(idHex) : dc.terminals.byId.get(idHex);
    // An ID we do not know costs an ECDH before its MAC can be checked. Under load (WireGuard §5.4.7) that is done only
    // for a sender that echoed our cookie: a flood from spoofed sources costs a cookie reply each (an HMAC, 40 bytes
    // back, less than came in; none to a source answered in the last second), before even a decode, and no EC
    // operation.
    // (A request back from the EC workers passed this, and the per-source limit below, on its first pass.)
    if (!rec && !pre && dc.unknownLoad.note(dc.clock.monotonic()) && !this.cookieEchoed(data, from)) {
      const cookie = dc.cookies.issueOnce(from);
      if (!cookie) return dc.drops.inc('reg-cookie-repeat');
      dc.counts.inc('reg-cookie-sent');
      return dc.send(encodeRegistrationCookie(data.readUInt32BE(4), cookie, requestMac1(data)), from, bind);
    }
    const d = decodeRegistrationRequest(data);
    if (!d.ok) return dc.drops.inc('reg-malformed');
    const req = d.value;
    const src = formatEndpoint(from);
    if (rec?.lastReg && rec.lastReg.txid === req.txid && rec.lastReg.time === req.time) {
      if (rec.lastReg.src !== src) return dc.drops.inc('reg-replay');
      dc.counts.inc('reg-retransmission');
      // A worker's commit may wait turns for another worker's write lock (dc/commit.ts): the copy waits for it too.
      if (dc.opts.worker) return dc.sendAfterCommit(rec.lastReg.response, from, bind);
      return dc.send(rec.lastReg.response, from, bind);
    }
    const now = dc.clock.now();
    const freshMs = dc.config.freshnessS * 1000;
    if (Math.abs(req.time - now) > freshMs) {
      dc.refusals.warn('reg-stale', 'registration refused: its time is too far from ours (a clock is wrong, or a replay)', {
        id: idHex,
        from: src,
        requestTime: new Date(req.time).toISOString(),
        dcTime: new Date(now).toISOString(),
      });
      return dc.drops.inc('reg-stale');
    }
    if (rec && rec.lastReqTime > now + freshMs) this.clampMark(rec, now);
    if (rec && req.time <= rec.lastReqTime) {
      dc.refusals.warn('reg-replay', 'registration refused as a replay: not newer than the last one accepted', {
        id: idHex,
        from: src,
        requestTime: new Date(req.time).toISOString(),
        lastAccepted: new Date(rec.lastReqTime).toISOString(),
      });
      return dc.drops.inc('reg-replay');
    }

    const ntChanged = !rec || !rec.nt.equals(req.nt);
    let nt: NT.NodeTransaction | undefined;
    /** A new ID's key, uncompressed (scratchKey): what its ECDH below is given. */
    let fullKey: Buffer | undefined;
    if (ntChanged) {
      const d = NT.decode(req.nt);
      if (d instanceof NT.NodeTransactionDecodeError) return dc.drops.inc('nt-malformed');
      if (!d.dcId.equals(dc.identity.id)) return dc.drops.inc('nt-wrong-dc');
      // The ID is the hash of the key: the same ID with another key, or a key that does not hash to the ID, is forged.
      if (rec) {
        if (!d.publicKey.equals(rec.publicKey)) return dc.drops.inc('nt-signature');
      } else {
        fullKey = dc.identity.impl.publicKeyConvert(d.publicKey, false, scratchKey) ?? undefined;
        if (!fullKey || !idFromUncompressed(fullKey).equals(d.id)) return dc.drops.inc('nt-signature');
      }
      nt = d;
    }
    const publicKey = rec?.publicKey ?? nt!.publicKey;
    // The MAC comes before the Node Transaction's signature: for a terminal we know it is one HMAC (K_ss cached), so a
    // flood of altered copies of a genuine request costs no signature recovery. Only the key's owner can make it hold.
    let kss = rec?.kss;
    // On an open DC an ID we do not know costs an ECDH before its MAC can be checked, and then an address: that is
    // what the per-source limit rations (a registered terminal's renewals never touch it). The household DC (whose
    // appliances all register from the agent's own address) asks instead whether it could admit the ID at all. A
    // request either turns down is answered (authenticated, so at the cost of the ECDH) only a few times a second for
    // the whole DC, and gets silence beyond.
    let overLimit = pre?.overLimit ?? false;
    if (!rec && !pre) {
      const mono = dc.clock.monotonic();
      const notAdmitted = !!dc.opts.mayAdmit && !dc.opts.mayAdmit(idHex, req.token);
      const overSource = !dc.opts.mayAdmit && !dc.opts.admit && !dc.newPerSource.take(from, mono);
      if (overSource) {
        dc.refusals.warn('reg-source-limit', 'first-time registrations refused: over the per-source limit', { from: src });
        dc.drops.inc('reg-source-limit');
      }
      if (notAdmitted || overSource) {
        if (!dc.limitedAnswers.take(mono)) {
          if (notAdmitted) {
            dc.refusals.warn('reg-not-admitted', 'registration refused: not admitted', { id: idHex, from: src });
            dc.drops.inc('reg-not-admitted');
          }
          return;
        }
        // Said once the MAC holds: over the source's limit here, not admitted (with admit()'s reason) below.
        overLimit = overSource;
      }
      dc.counts.inc('reg-ecdh');
    }
    if (!kss && dc.ec?.alive && !pre) {
      // The EC work on a worker thread; the request comes back here with its result (a copy: `data` is borrowed).
      const copy = Buffer.from(data);
      const over = overLimit;
      dc.counts.inc('reg-ec-worker');
      dc.ec!.submit(copy, (r) => {
        if (dc.stopped) return;
        try {
          this.onRegistration(copy, from, bind, { ...r, overLimit: over });
        } catch (e) {
          dc.drops.inc('internal');
          dc.log.error('registration handler failed', { err: e, from: src });
        }
      });
      return;
    }
    if (!kss) {
      const x = pre ? pre.kss : dc.identity.dh(fullKey ?? publicKey);
      if (!x) return dc.drops.inc('reg-key');
      kss = pre ? x : registrationKey(x);
      // K_ss depends on the two keys only: kept whether or not this request's MAC holds, so that after a restart
      // forged copies of a known terminal's request cost one ECDH in all, not one each.
      if (rec) rec.kss = keep(kss);
    }
    if (!checkRegistrationMac(req, kss)) return dc.drops.inc('reg-mac');
    // From here the request is authentic: a refusal is answered (sealed), so the terminal stops at once (§3.2).
    const authKey = kss;
    const refuse = (reason: RefusalReason, drop: string, extra: { limit?: number; retryAfterS?: number } = {}): void => {
      dc.drops.inc(drop);
      this.refuse(req, authKey, from, bind, reason, extra.limit ?? 0, extra.retryAfterS ?? 0);
    };
    if (overLimit) return refuse('rate-limited', 'reg-source-limit-answered', { retryAfterS: Math.ceil(60 / dc.config.newPerSourcePerMin) });
    if (nt && (pre && pre.nt !== 'unchecked' ? pre.nt : NT.check(nt)) !== 'ok') return dc.drops.inc('nt-signature');
    const revoking = nt?.revoked ?? false;
    if (!rec && dc.terminals.isRevokedId(idHex)) return refuse('revoked', 'reg-revoked');
    if (!rec && dc.opts.admit) {
      const a = dc.opts.admit(idHex, req.token);
      if (a !== true) {
        dc.log.warn('registration refused: not admitted', { id: idHex, from: src, reason: a === false ? 'not-admitted' : a });
        return refuse(a === false ? 'not-admitted' : a, 'reg-not-admitted');
      }
    }
    if (revoking) {
      // A terminal revoking itself (signed by its own key): record it; it gets no channel.
      dc.commit.stage({ kind: 'node', id: idHex, bytes: Buffer.from(req.nt) });
      if (rec) {
        rec.revoked = true;
        rec.nt = keep(req.nt);
        dc.terminals.touch(rec);
        this.channel.drop(rec);
      } else dc.terminals.revokeId(idHex, now);
      return;
    }
    if (rec?.revoked) return refuse('revoked', 'reg-revoked');

    const first = !rec;
    if (!rec) {
      // One kept copy of the Node Transaction; the record's ID and key are views of it (they never change, and a later
      // Node Transaction of the same ID carries the same ones).
      const ntKept = keep(req.nt);
      try {
        rec = dc.terminals.create({ id: idHex, idBytes: ntKept.subarray(1, 21), publicKey: ntKept.subarray(21, 54), nt: ntKept, lastReqTime: req.time, now });
      } catch (e) {
        if (!(e instanceof PoolExhaustedError)) throw e;
        dc.refusals.warn('reg-pool-full', 'registration refused: the address pool is full', { id: idHex, from: src, pool: dc.terminals.pools.v4.text, capacity: dc.terminals.capacity });
        return refuse('pool-full', 'reg-pool-exhausted', { limit: dc.terminals.capacity });
      }
    }
    if (ntChanged) {
      // A new record holds its own copy already.
      if (!first) rec.nt = keep(req.nt);
      dc.commit.stage({ kind: 'node', id: idHex, bytes: rec.nt });
      dc.commit.announce(rec.nt);
    }
    if (rec.kss !== kss) rec.kss = keep(kss);
    rec.lastReqTime = req.time;
    dc.terminals.seen(rec, now);
    this.learnLocation(rec, from, req.locals, req.txid, src);
    if (req.name) dc.terminals.setName(rec, req.name);
    dc.terminals.touch(rec);

    const nonceDc = randomPublicBytes(16);
    const [kT2Dc, kDc2T, kResp] = channelKeys(kss, req.nonce, nonceDc);
    const dcIndex = this.channel.open(
      rec,
      (localIndex) =>
        new TunnelKeypair({
          packetType: CONTROL_TYPE,
          sendKey: kDc2T,
          receiveKey: kT2Dc,
          localIndex,
          remoteIndex: req.terminalIndex,
          isInitiator: false,
          limits: CONTROL_LIMITS,
        }),
    );
    dc.terminals.addressBytes(rec, scratchV4, scratchV6);
    const body = encodeRegistrationBody({
      txid: req.txid,
      status: Status.OK,
      v4: scratchV4,
      v4Len: dc.terminals.pools.v4.length,
      v6: scratchV6,
      v6Len: dc.terminals.pools.v6.length,
      observed: from,
      behindNat: rec.nat !== 'none',
      keepaliveS: rec.nat !== 'none' ? dc.config.keepaliveS : 0,
      dcTime: now,
      relays: this.relayEntries(),
    });
    // Written once into kept memory (the cached answer for retransmissions), and sent from there.
    const response = keepRoom(RESPONSE_HEADER + body.length + AEAD_TAG_LENGTH);
    encodeRegistrationResponseHeader(req.terminalIndex, dcIndex, nonceDc).copy(response);
    defaultAead.seal(kResp, 0, body, undefined, response.subarray(RESPONSE_HEADER));
    rec.lastReg = { txid: req.txid, time: req.time, src, response };
    rec.keepaliveDue = dc.clock.monotonic() + dc.config.keepaliveS * 1000;
    dc.counts.inc(first ? 'registrations-new' : 'registrations-renewed');
    dc.sendAfterCommit(response, from, bind);
    dc.opts.onEvent?.({ kind: 'registered', id: idHex, v4: rec.v4, observed: src, nat: rec.nat, first });
  }

  /** Whether the request's mac2 is keyed by the cookie we issue to `from` (current or previous secret). */
  private cookieEchoed(data: Buffer, from: Endpoint): boolean {
    return hasMac2(data) && this.dc.cookies.validKeyed(from, (c) => mac2Of(data, c), requestMac2(data));
  }

  /**
   * An authenticated refusal (docs/protocol.md §3.2): a REGISTRATION_RESPONSE with no channel (DC index 0) whose body,
   * sealed under K_resp as an answer's, carries the reason. Sent at once (it records nothing), never cached: a
   * retransmission is checked again, and so may get an answer that changed (an address freed meanwhile).
   */
  private refuse(req: DecodedRegistrationRequest, kss: Uint8Array, to: Endpoint, bind: Bind, reason: RefusalReason, limit: number, retryAfterS: number): void {
    const nonceDc = randomPublicBytes(16);
    const [, , kResp] = channelKeys(kss, req.nonce, nonceDc);
    const body = encodeRegistrationRefusal({ txid: req.txid, reason, limit, retryAfterS });
    this.dc.counts.inc(`reg-refused-${reason}`);
    this.dc.send(Buffer.concat([encodeRegistrationResponseHeader(req.terminalIndex, 0, nonceDc), defaultAead.seal(kResp, 0, body)]), to, bind);
  }

  /**
   * The replay check compares request times (the terminal's wall clock) with the last one accepted, which is stored.
   * A mark later than now + freshness cannot have come from a correct clock (no request that late was fresh): it was
   * left by a boot with a wrong clock (one in 2046 locked every appliance out until 2046). It is moved back to
   * now − freshness, so every fresh request passes again. What this reopens is small: a request accepted in the
   * freshness window before the clock went wrong, replayed within that window after it was put right; a replayed
   * request from the wrong-clock boot is stale. The DC keeps no clock of its own that only goes up for this, because
   * the times compared are the terminal's, and freshness already bounds them by ours.
   */
  private clampMark(rec: TerminalRecord, now: number): void {
    const { dc } = this;
    dc.refusals.warn('reg-clock-clamp', 'a terminal\'s last registration time is ahead of our clock (a clock was wrong): moved back', {
      id: rec.id,
      lastAccepted: new Date(rec.lastReqTime).toISOString(),
      dcTime: new Date(now).toISOString(),
    });
    dc.counts.inc('reg-clock-clamped');
    rec.lastReqTime = now - dc.config.freshnessS * 1000;
    dc.terminals.touch(rec);
    dc.commit.schedule();
  }

  /** Where the terminal is and what is in front of it: NAT if the observed address is none of its own. */
  learnLocation(rec: TerminalRecord, from: Endpoint, locals: readonly Endpoint[], txid: bigint | undefined, fromText?: string): void {
    this.dc.terminals.observe(rec, from, fromText);
    // The decoded message's own array (each decode makes a new one): kept as it is.
    rec.locals = locals;
    const behindNat = !locals.some((l) => sameEndpoint(l, from));
    if (!behindNat) rec.nat = 'none';
    else {
      rec.nat = 'unknown';
      if (txid !== undefined) {
        const p = this.probes.get(txid);
        if (p?.mapping) {
          rec.nat = sameEndpoint(p.mapping, from) ? 'eim' : 'symmetric';
          this.probes.delete(txid);
        } else this.probes.set(txid, { rec, regMapping: from, at: this.dc.clock.monotonic() });
      }
    }
  }

  /** NAT_PROBE on the second port: the mapping seen here vs. the one the registration came from. */
  onProbe(data: Buffer, from: Endpoint): void {
    const { dc } = this;
    const d = decodeNatProbe(data);
    if (!d.ok || d.value.kind !== 0) return dc.drops.inc('probe-malformed');
    const { txid, id } = d.value;
    dc.send(encodeNatProbe(1, txid, id, from), from, this.probeBind);
    // Its registration may have come to another worker (another port, so another 4-tuple): they are all told.
    dc.opts.worker?.probeSeen(txid, id, from);
    this.probeMapping(txid, id, from);
  }

  /** The mapping a probe port (ours or another worker's) saw for probe `txid` of terminal `id`. */
  probeMapping(txid: bigint, id: Uint8Array, from: Endpoint): void {
    const { dc } = this;
    const p = this.probes.get(txid);
    if (p?.rec && p.regMapping) {
      if (formatId(id) === p.rec.id && p.rec.nat === 'unknown' && sameEndpoint(p.rec.observed, p.regMapping)) {
        p.rec.nat = sameEndpoint(from, p.regMapping) ? 'eim' : 'symmetric';
        dc.terminals.touch(p.rec);
        dc.commit.schedule();
      }
      this.probes.delete(txid);
    } else if (this.probes.size < 100_000) this.probes.set(txid, { mapping: from, at: dc.clock.monotonic() });
  }

  /** Forgets half-finished probes (called every second). */
  expire(): void {
    const mono = this.dc.clock.monotonic();
    // forEach, not for…of: no [key, value] array per probe (a busy DC holds up to 100,000 of them).
    this.probes.forEach((p, k) => {
      if (mono - p.at > 10_000) this.probes.delete(k);
    });
  }

  private relayEntries(): readonly RelayEntry[] {
    if (this.dc.relays.size === 0) return NO_RELAYS;
    return [...this.dc.relays.values()].map((r) => ({
      id: Buffer.from(r.id.slice(2), 'hex'),
      ...(r.v4 ? { v4: r.v4 } : {}),
      ...(r.v6 ? { v6: r.v6 } : {}),
    }));
  }
}
