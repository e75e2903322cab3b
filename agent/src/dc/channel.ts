// The DC's sealed control channel with each registered terminal (docs/protocol.md §3.3): keys from the registration,
// requests answered once and the answer kept for retransmissions, DC-initiated requests (Route Direction to CN,
// keep-alives through NATs, paper §2.2) retransmitted until acknowledged, and HINTs that invite a terminal whose
// channel is gone to register again.
import { randomU32 } from '../crypto/random.js';
import type { Endpoint } from '../types/net.js';
import { TunnelKeypair } from '../crypto/session.js';
import { formatId } from '../crypto/secp256k1.js';
import { HintReason, encodeHint } from '../protocol/registration.js';
import { Ctl, MAX_DNS_MESSAGE, decodeControl, encodeControl, type ControlMessage, type Target } from '../protocol/control.js';
import { PendingRequests, newTxid } from '../protocol/retransmit.js';
import { formatEndpoint, sameEndpoint } from '../protocol/endpoint.js';
import type { TerminalRecord } from './terminals.js';
import type { DcCore } from './core.js';

/** Control answers kept for retransmitted requests. */
const REPLY_CACHE = 16;

/** The requests the channel hands on (dc/direction.ts answers them). */
export interface ChannelRequests {
  direction(rec: TerminalRecord, txid: bigint, target: Target): Promise<void>;
  resolve(rec: TerminalRecord, txid: bigint, target: Target): void;
  pathRefresh(rec: TerminalRecord, txid: bigint, tunnelId: bigint, peerId: Uint8Array): void;
}

export class ControlChannel {
  /** Terminals by the DC's index of their channel (the receiver index of their control frames). */
  private readonly byIndex = new Map<number, TerminalRecord>();
  readonly requests = new PendingRequests<ControlMessage>();
  private readonly hintAt = new Map<string, number>();
  /** Set once the direction part exists (it answers through this channel). */
  handler: ChannelRequests | undefined;
  /** Set by the registration part: where a terminal is, learnt again from a Location Update. */
  onLocation: ((rec: TerminalRecord, from: Endpoint, locals: readonly Endpoint[], txid: bigint) => void) | undefined;

  constructor(private readonly dc: DcCore) {}

  /** A new channel for `rec` (made by `make` with the DC's index of it), replacing any it had; returns that index. */
  open(rec: TerminalRecord, make: (localIndex: number) => TunnelKeypair): number {
    this.drop(rec);
    const localIndex = this.newIndex();
    rec.channel = make(localIndex);
    this.byIndex.set(localIndex, rec);
    rec.replies = undefined;
    return localIndex;
  }

  private newIndex(): number {
    for (;;) {
      const i = randomU32();
      if (i !== 0 && !this.byIndex.has(i)) return i;
    }
  }

  drop(rec: TerminalRecord): void {
    if (!rec.channel) return;
    this.byIndex.delete(rec.channel.localIndex);
    rec.channel.destroy();
    rec.channel = undefined;
  }

  /** Whether the terminal can be directed now: a channel, a known address, heard from recently enough. */
  online(rec: TerminalRecord): boolean {
    if (!rec.channel || !rec.observed || rec.revoked) return false;
    const limit = rec.nat === 'none' ? this.dc.config.registrationTtlS : this.dc.config.keepaliveS * 3;
    return this.dc.clock.now() - rec.lastSeen < limit * 1000;
  }

  onControl(data: Buffer, from: Endpoint): void {
    const rec = this.byIndex.get(TunnelKeypair.receiverIndex(data));
    if (!rec?.channel) {
      this.dc.drops.inc('ctl-unknown-session');
      // A terminal whose channel this DC lost (a restart, a deregistration it missed) is invited to register again,
      // but only at an address a terminal of ours was last seen at: to anyone else an unauthenticated frame gets
      // silence (docs/protocol.md §3), or every forged 4-byte frame would draw a 24-byte answer to its claimed source.
      const known = this.dc.terminals.atEndpoint(from);
      if (known && !known.revoked) this.hint(HintReason.UNKNOWN_SESSION, from);
      return;
    }
    const pt = rec.channel.open(data);
    if (typeof pt === 'string') return this.dc.drops.inc(`ctl-${pt}`);
    const d = decodeControl(pt);
    if (!d.ok) return this.dc.drops.inc('ctl-malformed');
    const m = d.value;
    this.dc.terminals.seen(rec, this.dc.clock.now());
    if (!sameEndpoint(rec.observed, from)) {
      // An authentic packet from a new address: the terminal moved (or its NAT rebound). Follow it at once.
      this.dc.terminals.observe(rec, from);
      if (rec.nat === 'none') rec.nat = rec.locals.some((l) => sameEndpoint(l, from)) ? 'none' : 'unknown';
      this.dc.terminals.touch(rec);
      this.dc.commit.schedule();
    }
    const cached = rec.replies?.get(m.txid);
    if (cached && m.type !== Ctl.KEEPALIVE_ACK && m.type !== Ctl.ROUTE_ACK && m.type !== Ctl.ACK) {
      this.dc.counts.inc('ctl-retransmission');
      return this.sendRaw(rec, cached);
    }
    switch (m.type) {
      case Ctl.KEEPALIVE_ACK:
      case Ctl.ROUTE_ACK:
      case Ctl.ACK:
        this.requests.resolve(m.txid, m);
        return;
      case Ctl.KEEPALIVE:
        return this.reply(rec, { type: Ctl.ACK, txid: m.txid });
      case Ctl.DIRECTION_REQUEST:
        this.dc.counts.inc('directions');
        // Mark as in progress so retransmissions do not start a second route computation.
        (rec.replies ??= new Map()).set(m.txid, Buffer.alloc(0));
        void this.handler?.direction(rec, m.txid, m.target);
        return;
      case Ctl.LOCATION_UPDATE:
        this.onLocation?.(rec, from, m.locals, m.txid);
        this.dc.terminals.touch(rec);
        this.dc.counts.inc('location-updates');
        return this.reply(rec, { type: Ctl.LOCATION_ACK, txid: m.txid, observed: from, behindNat: rec.nat !== 'none' }, true);
      case Ctl.RTT_REPORT:
        {
          const rtts = new Map(rec.rsRtt);
          for (const [id, ms] of m.rtts) rtts.set(formatId(id), ms);
          rec.rsRtt = rtts;
        }
        return this.reply(rec, { type: Ctl.ACK, txid: m.txid });
      case Ctl.RESOLVE_REQUEST:
        return this.handler?.resolve(rec, m.txid, m.target);
      case Ctl.DNS_QUERY:
        return this.dnsQuery(rec, m.txid, m.message);
      case Ctl.PATH_REFRESH:
        // Its observed address is already this frame's source (above): a NAT that rebound shows here first.
        this.dc.counts.inc('path-refreshes');
        return this.handler?.pathRefresh(rec, m.txid, m.tunnelId, m.peerId);
      case Ctl.DEREGISTER:
        this.reply(rec, { type: Ctl.ACK, txid: m.txid });
        this.drop(rec);
        return;
      default:
        return this.dc.drops.inc('ctl-unexpected');
    }
  }

  /** A DNS-SD question from a terminal: the hook's answer (agent/src/agent/dns-sd.ts), or an empty one. */
  private dnsQuery(rec: TerminalRecord, txid: bigint, query: Uint8Array): void {
    this.dc.counts.inc('dns-queries');
    let answer: Uint8Array | undefined;
    try {
      answer = this.dc.opts.answerDns?.(rec.id, query);
    } catch (e) {
      this.dc.log.error('answering a DNS-SD question failed', { err: e, from: rec.id });
    }
    if (answer && answer.length > MAX_DNS_MESSAGE) answer = undefined;
    this.reply(rec, { type: Ctl.DNS_ANSWER, txid, message: answer ?? Buffer.alloc(0) });
  }

  /** Seals and sends a control message already encoded (now, or after this turn's commit). */
  sendRaw(rec: TerminalRecord, plaintext: Uint8Array, afterCommit = false): void {
    if (!rec.channel || !rec.observed || plaintext.length === 0) return;
    const frame = rec.channel.seal(plaintext);
    if (typeof frame === 'string') return this.dc.drops.inc(`ctl-seal-${frame}`);
    if (afterCommit) this.dc.sendAfterCommit(frame, rec.observed);
    else this.dc.send(frame, rec.observed);
  }

  /** Answers a terminal's request and remembers the answer for its retransmissions. */
  reply(rec: TerminalRecord, m: ControlMessage, afterCommit = false): void {
    const pt = encodeControl(m);
    const replies = (rec.replies ??= new Map());
    replies.set(m.txid, pt);
    if (replies.size > REPLY_CACHE) replies.delete(replies.keys().next().value!);
    this.sendRaw(rec, pt, afterCommit);
  }

  /** A DC-initiated request to a terminal (Route Direction to CN), retransmitted until acknowledged. */
  request(rec: TerminalRecord, m: ControlMessage, what: string): Promise<ControlMessage> {
    const pt = encodeControl(m);
    return this.requests.request(m.txid, what, () => this.sendRaw(rec, pt), {
      initialMs: 400,
      maxMs: 3000,
      deadlineMs: 10_000,
    });
  }

  /** Keep-alives through NATs (paper §2.2), for the terminals whose period is up. */
  keepalives(): void {
    const mono = this.dc.clock.monotonic();
    for (const rec of this.dc.terminals.byId.values()) {
      if (!rec.channel || rec.nat === 'none' || rec.keepaliveDue > mono) continue;
      rec.keepaliveDue = mono + this.dc.config.keepaliveS * 1000;
      this.sendRaw(rec, encodeControl({ type: Ctl.KEEPALIVE, txid: newTxid(), dcTime: this.dc.clock.now() }));
      this.dc.counts.inc('keepalives');
    }
  }

  /** Tells a revoked terminal so, and closes its channel. */
  revoked(rec: TerminalRecord): void {
    if (rec.channel) this.sendRaw(rec, encodeControl({ type: Ctl.REVOKED, txid: newTxid() }));
    this.drop(rec);
  }

  hint(reason: number, to: Endpoint): void {
    const key = formatEndpoint(to);
    const now = this.dc.clock.monotonic();
    if ((this.hintAt.get(key) ?? -Infinity) > now - 1000) return;
    if (this.hintAt.size > 50_000) this.hintAt.clear();
    this.hintAt.set(key, now);
    this.dc.send(encodeHint(reason, this.dc.identity.id), to);
  }

  /** After a restart the channels are gone: invite recently seen terminals to re-register now, not at their next keep-alive. */
  hintRestart(): void {
    const cutoff = this.dc.clock.now() - this.dc.config.registrationTtlS * 1000;
    const targets = [...this.dc.terminals.byId.values()].filter((r) => r.observed && !r.revoked && r.lastSeen >= cutoff);
    let i = 0;
    const batch = (): void => {
      if (this.dc.stopped) return;
      for (const end = Math.min(i + 500, targets.length); i < end; i++) {
        const r = targets[i]!;
        if (!r.channel) this.dc.send(encodeHint(HintReason.DC_RESTARTED, this.dc.identity.id), r.observed!);
      }
      if (i < targets.length) setTimeout(batch, 10);
    };
    if (targets.length > 0) {
      this.dc.log.info('inviting terminals to re-register', { count: targets.length });
      batch();
    }
  }
}
