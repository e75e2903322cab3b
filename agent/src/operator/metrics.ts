// Prometheus metrics (text exposition format 0.0.4, through prom-client) of the DC, the RS and the agent, read from the
// counters the roles already keep (their status(): `counts`, `drops`, tunnels). Names follow Prometheus conventions:
// ntm_<role>_<what>_<unit>_total for counters, no _total for gauges, reasons and path kinds as labels, process memory
// from prom-client's default process_*/nodejs_* metrics. Nothing here touches a packet: a scrape takes one status()
// snapshot of each role and turns it into samples, so the roles need no metrics code of their own.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** What the metrics read: a role's status() (DcServer, RsServer, TerminalHost, AgentRuntime all have one). */
export interface StatusSource {
  status(): Record<string, unknown>;
}

type Json = Record<string, unknown>;
type Reader = (snap: Json) => Record<string, number> | number | undefined;

const obj = (v: unknown): Json => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {});
const arr = (v: unknown): Json[] => (Array.isArray(v) ? (v as Json[]) : []);
const numbers = (v: unknown): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const [k, x] of Object.entries(obj(v))) if (typeof x === 'number') out[k] = x;
  return out;
};
const pick = (prefix: string, v: unknown, keep: boolean): Record<string, number> =>
  Object.fromEntries(Object.entries(numbers(v)).filter(([k]) => k.startsWith(prefix) === keep).map(([k, x]) => [keep ? k.slice(prefix.length) : k, x]));

/**
 * One process's metrics. `scrape()` takes a fresh snapshot of every source, then renders; the collect() callbacks
 * read only that snapshot, so a scrape costs one status() per role however many metrics there are.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly sources = new Map<string, (earlier: ReadonlyMap<string, Json>) => Json>();
  private snapshot = new Map<string, Json>();

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  async scrape(): Promise<string> {
    const snap = new Map<string, Json>();
    for (const [k, read] of this.sources) snap.set(k, read(snap));
    this.snapshot = snap;
    return this.registry.metrics();
  }

  /** A snapshot source, by name; metrics built with `source` read from it. `read` sees the sources added before it. */
  source(name: string, read: (earlier: ReadonlyMap<string, Json>) => Json): this {
    this.sources.set(name, read);
    return this;
  }

  /**
   * A counter whose value the role keeps (monotonic since the process started). `label`: the reading gives one value
   * per label value (a reason, a path kind); without it, one number.
   */
  counter(source: string, name: string, help: string, read: Reader, label?: string): this {
    this.metric(Counter, source, name, help, read, label);
    return this;
  }

  gauge(source: string, name: string, help: string, read: Reader, label?: string): this {
    this.metric(Gauge, source, name, help, read, label);
    return this;
  }

  private metric(kind: typeof Counter | typeof Gauge, source: string, name: string, help: string, read: Reader, label?: string): void {
    const snap = () => this.snapshot.get(source) ?? {};
    new kind({
      name,
      help,
      labelNames: label ? [label] : [],
      registers: [this.registry],
      collect(this: Counter | Gauge) {
        this.reset();
        const v = read(snap());
        if (v === undefined) return;
        // Counter.inc from a reset zero sets the kept value: the role's counter is the truth, not this object.
        const set = (labels: Record<string, string>, x: number) => (this instanceof Gauge ? this.set(labels, x) : this.inc(labels, Math.max(0, x)));
        if (typeof v === 'number') set({}, v);
        else for (const [k, x] of Object.entries(v)) set(label ? { [label]: k } : {}, x);
      },
    });
  }
}

/** The DC's metrics (paper §2.2–2.3: registrations and directions); `extra` holds the counts only `ntm dc` keeps (admission). */
export function dcMetrics(m: Metrics, source: string): Metrics {
  const c = (k: string) => (s: Json) => numbers(s.counts)[k] ?? 0;
  return m
    .counter(
      source,
      'ntm_dc_registrations_total',
      'Registrations accepted, by kind (first: a new terminal; renewal: a known one).',
      (s) => ({ first: numbers(s.counts)['registrations-new'] ?? 0, renewal: numbers(s.counts)['registrations-renewed'] ?? 0 }),
      'kind',
    )
    .counter(source, 'ntm_dc_routes_total', 'Routes handed out, by the path planned (direct, hole punching, relay).', (s) => pick('routes-', s.counts, true), 'path')
    .counter(source, 'ntm_dc_directions_total', 'Direction Requests answered with a route (paper §2.3).', c('directions'))
    .counter(source, 'ntm_dc_keepalives_sent_total', 'NAT keep-alives sent to terminals behind NATs.', c('keepalives'))
    .counter(source, 'ntm_dc_location_updates_total', 'Terminals seen at a new address (handovers, NAT rebinding).', c('location-updates'))
    .counter(source, 'ntm_dc_retransmissions_received_total', 'Requests received again (answered from the reply cache), by kind.', (s) => ({ registration: numbers(s.counts)['reg-retransmission'] ?? 0, control: numbers(s.counts)['ctl-retransmission'] ?? 0 }), 'kind')
    .counter(source, 'ntm_dc_packets_received_total', 'Datagrams received on the DC port.', c('rx'))
    .counter(source, 'ntm_dc_packets_sent_total', 'Datagrams sent from the DC port.', c('tx'))
    .counter(source, 'ntm_dc_drops_total', 'Datagrams dropped, by reason (malformed, replayed, not admitted, …).', (s) => numbers(s.drops), 'reason')
    .counter(source, 'ntm_dc_enrollment_refusals_total', 'First registrations refused by enrollment-key admission, by reason.', (s) => numbers(obj(s.extra).refusals), 'reason')
    .gauge(source, 'ntm_dc_terminals', 'Terminals holding an address lease of this DC (revoked ones until their lease ends).', (s) => (typeof s.terminals === 'number' ? s.terminals : undefined))
    .gauge(source, 'ntm_dc_pool_capacity', 'Terminals the IPv4 address pool can serve; at ntm_dc_terminals, new terminals are refused.', (s) => (typeof s.capacity === 'number' ? s.capacity : undefined))
    .gauge(source, 'ntm_dc_terminals_online', 'Terminals heard from within the registration TTL.', (s) => (typeof s.online === 'number' ? s.online : undefined));
}

/** The Relay Server's metrics (paper §2.3 Fig. 4). */
export function rsMetrics(m: Metrics, source: string): Metrics {
  const c = (k: string) => (s: Json) => numbers(s.counts)[k] ?? 0;
  return m
    .counter(source, 'ntm_rs_relayed_packets_total', 'Tunnel packets relayed between the two ends.', c('relayed'))
    .counter(source, 'ntm_rs_relayed_bytes_total', 'Bytes of tunnel packets relayed (UDP payload).', c('relayed-bytes'))
    .counter(source, 'ntm_rs_packets_received_total', 'Datagrams received on the RS port.', c('rx'))
    .counter(source, 'ntm_rs_tunnels_bound_total', 'Tunnels bound with a DC-signed ticket.', c('tunnels'))
    .counter(source, 'ntm_rs_rebinds_total', 'Tunnel ends that moved to a new address.', c('rebinds'))
    .counter(source, 'ntm_rs_drops_total', 'Datagrams dropped, by reason.', (s) => numbers(s.drops), 'reason')
    .gauge(source, 'ntm_rs_tunnels', 'Tunnels the RS holds now.', (s) => (Array.isArray(s.tunnels) ? s.tunnels.length : undefined))
    .gauge(source, 'ntm_rs_load_ratio', 'Load the RS reports to its DCs (tunnels / capacity).', (s) => (typeof s.load === 'number' ? s.load : undefined));
}

/** An NTM terminal host's metrics (the agent's appliances, or `ntm up`): tunnels by path kind, handshake failures. */
export function terminalMetrics(m: Metrics, source: string): Metrics {
  return m
    .counter(source, 'ntm_terminal_tunnels_established_total', 'Tunnels established, by path kind (direct, punched, relayed, …).', (s) => pick('tunnels-', s.counts, true), 'path')
    .counter(source, 'ntm_terminal_handshake_failures_total', 'Noise handshakes that failed, by reason.', (s) => pick('handshake-', s.drops, true), 'reason')
    .counter(source, 'ntm_terminal_drops_total', 'Datagrams dropped other than failed handshakes, by reason.', (s) => pick('handshake-', s.drops, false), 'reason')
    .gauge(
      source,
      'ntm_terminal_tunnels',
      'Tunnels up now, by path kind.',
      (s) => {
        const out: Record<string, number> = {};
        for (const t of arr(s.tunnels)) if (t.state === 'up') out[String(t.path)] = (out[String(t.path)] ?? 0) + 1;
        return out;
      },
      'path',
    )
    // Gauges, not counters: a closed tunnel takes its bytes with it (the terminal keeps no running total).
    .gauge(source, 'ntm_terminal_tunnels_sent_bytes', 'Bytes sent through the tunnels that exist now (inner packets).', (s) => arr(s.tunnels).reduce((a, t) => a + (typeof t.txBytes === 'number' ? t.txBytes : 0), 0))
    .gauge(source, 'ntm_terminal_tunnels_received_bytes', 'Bytes received through the tunnels that exist now (inner packets).', (s) => arr(s.tunnels).reduce((a, t) => a + (typeof t.rxBytes === 'number' ? t.rxBytes : 0), 0));
}

/** The household agent: its DC, its RS, its appliances' terminal host and its data path, from one status(). */
export function agentMetrics(m: Metrics, agent: StatusSource): Metrics {
  m.source('agent', () => agent.status())
    .source('agent.dc', (s) => obj(s.get('agent')?.dc))
    .source('agent.rs', (s) => obj(s.get('agent')?.rs))
    .source('agent.terminal', (s) => obj(s.get('agent')?.terminal));
  dcMetrics(m, 'agent.dc');
  rsMetrics(m, 'agent.rs');
  terminalMetrics(m, 'agent.terminal');
  return m.counter('agent', 'ntm_agent_dataplane_events_total', 'Data-path events of the appliances\' packets (NFQUEUE verdicts, ICMP answers), by event.', (s) => numbers(obj(s.dataplane).counters), 'event');
}
