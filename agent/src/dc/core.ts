// The state the DC's parts share (dc/server.ts owns it; registration, channel, direction and federation work on it):
// the options it was started with, its terminals, the peer DCs and RSs it knows, its counters, and the per-turn commit
// through which every answer leaves. One event loop: nothing here is locked.
import type { Bind, Clock, Endpoint } from '../types/net.js';
import type { Registry } from '../types/registry.js';
import type { Db } from '../store/db.js';
import type { SectionConfig } from '../config/schema.js';
import type { Identity } from '../protocol/identity.js';
import type { ServerRecord } from '../protocol/dc-record.js';
import { Counters, silentLogger, ThrottledLog, type Logger } from '../util/log.js';
import { TerminalTable } from './terminals.js';
import { TurnCommit } from './commit.js';
import { defaultPools } from './pools.js';
import type { RelayCandidate } from './route.js';
import { LoadMeter, SourceLimiter, TokenBucket } from '../util/source-limit.js';
import { SourceCookies } from '../crypto/source-cookie.js';
import { mac1Key, type RefusalReason } from '../protocol/registration.js';
import { EcWorkers } from './ec-workers.js';
import type { Siblings } from './siblings.js';

export interface DcServerOptions {
  readonly identity: Identity;
  /** The DC's database: its terminal table, and the transaction each turn's registry entries are staged in. */
  readonly db: Db;
  /** The ledger (types/registry.ts), opened by the starter on `db` (SQLite by default). The DC closes it on stop. */
  readonly registry: Registry;
  /** The terminals' socket (config `listen`); the DC owns it from start() on and closes it. */
  readonly bind: Bind;
  /** The NAT-probe socket (a second port, docs/protocol.md §3.2); owned and closed as `bind`. */
  readonly probeBind: Bind;
  readonly config: SectionConfig<'dc'>;
  readonly log?: Logger;
  readonly clock?: Clock;
  /**
   * Whether an ID seen for the first time may register (with the token it presented). Absent: an open DC, as the
   * paper's public DCs. The agent's household DC admits only paired appliances and enrolled phones.
   */
  readonly admit?: (id: string, token: Uint8Array) => Admission;
  /**
   * With `admit`: whether it could admit this ID with this token, asked before the ECDH an unknown ID costs and
   * without side effects (admit() may spend a one-time token, so it is asked only once the request's MAC holds).
   * The household DC answers from what the household paired or invited, so a forged registration costs it no EC
   * operation. Absent: every unknown ID gets its ECDH (within the per-source limit of an open DC).
   */
  readonly mayAdmit?: (id: string, token: Uint8Array) => boolean;
  /** Whether a terminal's address lease never expires (a household's own devices); absent: every lease may expire. */
  readonly keepLease?: (id: string) => boolean;
  /** Whether `from` may get a route to `to` (the household's access policy); absent: allowed. */
  readonly allowDirection?: (from: string, to: string) => boolean;
  /**
   * Answers a terminal's DNS-SD question (a DNS query message; RFC 6763) with a DNS response message, or undefined when
   * this DC has nothing to say (then the terminal gets an empty DNS_ANSWER). The household agent answers with the
   * services of the appliances `from` may reach; a plain DC has no such hook. Called on the event loop: must not block.
   */
  readonly answerDns?: (from: string, query: Uint8Array) => Uint8Array | undefined;
  /** Events for the web UI's live view. */
  readonly onEvent?: (e: DcEvent) => void;
  /**
   * This process is one of the DC's workers (dc.workers > 1, issue 15; dc/siblings.ts): it shares its ports and its
   * database with the others, takes every count-th address of the pool, commits with BEGIN IMMEDIATE, reads a
   * terminal's row before it decides on its registration, and asks the others for a direction's target it does not
   * serve. The registry handed in must be opened shared (SqliteRegistry's `shared`). Absent: the only process.
   */
  readonly worker?: Siblings;
}

/** An admission decision: true admits; false or a refusal reason refuses (the terminal is told which, §3.2). */
export type Admission = boolean | Exclude<RefusalReason, 'pool-full' | 'revoked' | 'rate-limited'>;

export type DcEvent =
  | { readonly kind: 'registered'; readonly id: string; readonly v4: string; readonly observed: string; readonly nat: string; readonly first: boolean }
  | { readonly kind: 'route'; readonly from: string; readonly to: string; readonly path: string; readonly tunnelId: string }
  | { readonly kind: 'direction-refused'; readonly from: string; readonly target: string; readonly status: string };

export interface PeerState {
  readonly id: string;
  readonly endpoint: Endpoint;
  /** Where the DC learnt of this peer: its configuration (--peer) or the ledger's directory (EVM: the contract). */
  readonly source: 'config' | 'ledger';
  publicKey?: Buffer;
  record?: ServerRecord;
  helloAt: number;
  answered: boolean;
}

export interface RelayState {
  readonly id: string;
  /**
   * Configured (dc.relays: kept), announced by the RS itself (dc.acceptRelays: forgotten when it falls silent), or
   * listed for this DC on the ledger (EVM: the contract's announceRelay; kept until withdrawn there).
   */
  readonly source: 'config' | 'announced' | 'ledger';
  v4?: Endpoint;
  v6?: Endpoint;
  publicKey?: Buffer;
  load?: number;
  loadAt?: number;
  /** The interval between its last two load reports (ms): how long a silence means it stopped (relaySilent). */
  reportEveryMs?: number;
  lastIntervalMs?: number;
  /** Active tunnels and capacity of its last load report; packets/s it relayed over the report's period. */
  tunnels?: number;
  capacity?: number;
  packetsPerS?: number;
  /** When it last announced itself (HELLO or load report; monotonic ms). */
  heardAt?: number;
  /** Relayed routes this DC directed through it since its last load report (monotonic ms each): load it has not reported yet. */
  assigned: number[];
  /** Its count of tunnels made from our tickets, at its last load report (absent: an RS that does not say). */
  bound?: number;
  /** The DC's RTT to it (ms): the least of its last RTT_SAMPLES pongs. */
  dcRtt?: number;
  rttSamples: number[];
  /** The autoscaler retires it: not chosen while anything else can serve. */
  draining: boolean;
}

/** Pongs the DC keeps per RS for its RTT figure. */
export const RTT_SAMPLES = 5;

/** One relay choice of a relayed route, with every candidate's figures (dc status: relayChoices). */
export interface RelayChoiceRecord {
  readonly at: number;
  readonly tunnelId: string;
  readonly a: string;
  readonly b: string;
  readonly rsId: string;
  readonly candidates: readonly RelayCandidate[];
}

export function newRelay(id: string, source: RelayState['source']): RelayState {
  return { id, source, assigned: [], rttSamples: [], draining: false };
}

/**
 * An RS that reported before but missed three of its report periods (at least 5 s) is presumed gone (killed,
 * unreachable): relay choice ranks it as full, used only when no other RS can serve (issue 13 #3: RS failover).
 */
export function relaySilent(r: RelayState, now: number): boolean {
  return r.loadAt !== undefined && now - r.loadAt > Math.max(5000, 3 * (r.reportEveryMs ?? 5000));
}

const SYSTEM_CLOCK: Clock = { now: () => Date.now(), monotonic: () => performance.now() };

export class DcCore {
  readonly drops = new Counters();
  readonly counts = new Counters();
  readonly log: Logger;
  /** For refusals anyone can provoke (replays, stale requests, floods): a line per kind per 10 s. */
  readonly refusals: ThrottledLog;
  readonly clock: Clock;
  readonly identity: Identity;
  readonly config: SectionConfig<'dc'>;
  readonly terminals: TerminalTable;
  readonly registry: Registry;
  readonly commit: TurnCommit;
  readonly peers = new Map<string, PeerState>();
  readonly relays = new Map<string, RelayState>();
  /** RS IDs taken when they announce themselves (dc.acceptRelays, and what the embedding autoscaler adds). */
  readonly acceptedRelays: Set<string>;
  /** The last relayed routes' choices (newest last, at most 64). */
  readonly relayChoices: RelayChoiceRecord[] = [];
  /** First-time registrations per source (util/source-limit.ts). */
  readonly newPerSource: SourceLimiter;
  /**
   * Authenticated refusals to requests over their source's limit, or from IDs mayAdmit turned down (each costs the
   * ECDH those checks ration): a few a second for the whole DC, silence beyond (util/source-limit.ts TokenBucket).
   */
  readonly limitedAnswers = new TokenBucket(20, 20);
  /** Registrations from unknown IDs asked for (each an ECDH): above dc.cookieAbovePerSec the DC asks for cookies. */
  readonly unknownLoad: LoadMeter;
  /** The cookies a DC under load hands out (REGISTRATION_COOKIE, docs/protocol.md §3.2). */
  readonly cookies: SourceCookies;
  /** The key of mac1, derived from the DC's public key once. */
  readonly mac1Key: Buffer;
  stopped = false;
  /** The first registrations' EC work on worker threads (dc.ecWorkers; absent: on the event loop). */
  readonly ec: EcWorkers | undefined;

  readonly bind: Bind;

  constructor(readonly opts: DcServerOptions) {
    this.bind = opts.bind;
    this.log = (opts.log ?? silentLogger).child({ role: 'dc' });
    this.clock = opts.clock ?? SYSTEM_CLOCK;
    this.newPerSource = new SourceLimiter({ burst: opts.config.newPerSourceBurst, perMinute: opts.config.newPerSourcePerMin, maxSources: opts.config.limitSources });
    this.unknownLoad = new LoadMeter(opts.config.cookieAbovePerSec);
    this.cookies = new SourceCookies(() => this.clock.monotonic());
    this.mac1Key = mac1Key(opts.identity.publicKey);
    this.ec = opts.config.ecWorkers >= 1 ? new EcWorkers(opts.identity, Math.floor(opts.config.ecWorkers), (e) => this.log.error('ec worker failed', { err: e })) : undefined;
    this.refusals = new ThrottledLog(this.log, () => this.clock.monotonic());
    this.identity = opts.identity;
    this.config = opts.config;
    this.registry = opts.registry;
    const pools = defaultPools(opts.config, opts.identity.id);
    const w = opts.worker;
    this.terminals = new TerminalTable(opts.db, pools.v4, pools.v6, () => this.clock.monotonic(), w ? { index: w.index, count: w.count } : undefined);
    this.commit = new TurnCommit(opts.db, this.terminals, this.registry, this.log, (d, to, b) => this.send(d, to, b), !!w);
    // helloAt -Infinity: the first HELLO goes at start (0 held it back until the process was 5 s old: monotonic time).
    for (const p of opts.config.peers) this.peers.set(p.id, { id: p.id, endpoint: p.endpoint, source: 'config', helloAt: -Infinity, answered: false });
    this.acceptedRelays = new Set(opts.config.acceptRelays);
    for (const r of opts.config.relays) {
      const st = this.relays.get(r.id) ?? newRelay(r.id, 'config');
      if (r.endpoint.family === 4) st.v4 = r.endpoint;
      else st.v6 = r.endpoint;
      this.relays.set(r.id, st);
    }
  }

  /** Sends now (answers that depend on nothing uncommitted). */
  send(data: Uint8Array, to: Endpoint, bind: Bind = this.bind): void {
    this.counts.inc('tx');
    bind.send(data, to);
  }

  /** Sends once the current turn's changes are committed (an answer that tells what they record). */
  sendAfterCommit(data: Uint8Array, to: Endpoint, bind: Bind = this.bind): void {
    this.commit.sendAfter(data, to, bind);
  }
}
