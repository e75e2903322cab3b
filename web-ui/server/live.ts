// Live updates for open pages (server-sent events, text/event-stream): agent events as they happen, the status
// (health + tunnels) when it changes, and a "changed" hint when devices, phones or grants change, so the page
// re-reads just those lists. Polls the AgentApi only while at least one page is connected.
//
// Events on the stream:
//   event: status   data: {"health": Health, "tunnels": Tunnel[]}
//   event: traffic  data: Traffic (the per-connection history), when a new step is in
//   event: changed  data: {"devices": bool, "phones": bool, "grants": bool}
//   event: event    data: Event (an AgentEvent)
import { PassThrough } from 'node:stream';
import type { AgentApi, AgentEvent } from '../../agent/src/types/household.js';
import type { Logger } from '../../agent/src/util/log.js';

interface Client {
  readonly stream: PassThrough;
  /** Checked on every tick: a signed-out or expired session's stream is closed. */
  readonly alive: () => boolean;
}

export interface LiveOptions {
  /** How often status and lists are compared (ms); default 2000. */
  readonly intervalMs?: number;
  /** A comment line this often keeps idle connections open through proxies (ms); default 15000. */
  readonly heartbeatMs?: number;
  readonly maxClients?: number;
}

export class LiveHub {
  private readonly clients = new Set<Client>();
  private timer: NodeJS.Timeout | undefined;
  private soon: NodeJS.Timeout | undefined;
  private lastStatus = '';
  /** The end of the traffic history's last step that was sent. */
  private lastTraffic: string | null = null;
  private lastLists = { devices: '', phones: '', grants: '' };
  private lastBeat = 0;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly api: AgentApi,
    private readonly log: Logger,
    private readonly opts: LiveOptions = {},
  ) {}

  get size(): number {
    return this.clients.size;
  }

  get full(): boolean {
    return this.clients.size >= (this.opts.maxClients ?? 32);
  }

  /** A new stream for one page: it gets the current status at once, then changes. */
  open(alive: () => boolean): PassThrough {
    const stream = new PassThrough();
    const client: Client = { stream, alive };
    this.clients.add(client);
    stream.on('close', () => this.drop(client));
    stream.write('retry: 3000\n\n');
    if (this.clients.size === 1) this.startPolling();
    this.send(client, 'status', this.status().json);
    this.send(client, 'traffic', JSON.stringify(this.api.traffic()));
    return stream;
  }

  /** Ends every stream (the server is closing). */
  close(): void {
    for (const c of [...this.clients]) c.stream.end();
    this.clients.clear();
    this.stopPolling();
  }

  private drop(client: Client): void {
    this.clients.delete(client);
    if (this.clients.size === 0) this.stopPolling();
  }

  private startPolling(): void {
    this.unsubscribe = this.api.onEvent((e) => this.onAgentEvent(e));
    this.lastLists = this.lists();
    this.lastStatus = this.status().key;
    this.lastTraffic = this.api.traffic().end;
    this.lastBeat = Date.now();
    this.timer = setInterval(() => this.tick(), this.opts.intervalMs ?? 2000);
    this.timer.unref();
  }

  private stopPolling(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.soon) clearTimeout(this.soon);
    this.timer = undefined;
    this.soon = undefined;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  private onAgentEvent(e: AgentEvent): void {
    this.broadcast('event', JSON.stringify(e));
    // Most events mean a list or the status changed: look now rather than at the next tick.
    if (!this.soon) {
      this.soon = setTimeout(() => {
        this.soon = undefined;
        this.tick();
      }, 50);
      this.soon.unref();
    }
  }

  private status(): { json: string; key: string } {
    const health = this.api.health();
    const tunnels = this.api.tunnels();
    const json = JSON.stringify({ health, tunnels });
    // Uptime ticks every second; it alone is not a change worth a message.
    const key = JSON.stringify({ health: { ...health, agent: { ...health.agent, uptimeS: 0 } }, tunnels });
    return { json, key };
  }

  private lists(): { devices: string; phones: string; grants: string } {
    // An online device's "last seen" moves on every discovery pass; the page shows it only for offline devices,
    // so only then is it a change (otherwise every open page would redraw its lists every few seconds).
    const devices = this.api.devices().map((d) => (d.online ? { ...d, lastSeen: null } : d));
    return { devices: JSON.stringify(devices), phones: JSON.stringify(this.api.phones()), grants: JSON.stringify(this.api.grants()) };
  }

  private tick(): void {
    try {
      for (const c of [...this.clients]) {
        if (!c.alive()) {
          c.stream.end();
          this.drop(c);
        }
      }
      if (this.clients.size === 0) return;
      const s = this.status();
      if (s.key !== this.lastStatus) {
        this.lastStatus = s.key;
        this.broadcast('status', s.json);
      }
      const traffic = this.api.traffic();
      if (traffic.end !== this.lastTraffic) {
        this.lastTraffic = traffic.end;
        this.broadcast('traffic', JSON.stringify(traffic));
      }
      const l = this.lists();
      const changed = { devices: l.devices !== this.lastLists.devices, phones: l.phones !== this.lastLists.phones, grants: l.grants !== this.lastLists.grants };
      this.lastLists = l;
      if (changed.devices || changed.phones || changed.grants) this.broadcast('changed', JSON.stringify(changed));
      const now = Date.now();
      if (now - this.lastBeat >= (this.opts.heartbeatMs ?? 15_000)) {
        this.lastBeat = now;
        for (const c of this.clients) c.stream.write(': keep-alive\n\n');
      }
    } catch (e) {
      this.log.error('live update failed', { err: e });
    }
  }

  private broadcast(event: string, data: string): void {
    for (const c of this.clients) this.send(c, event, data);
  }

  private send(c: Client, event: string, data: string): void {
    // JSON has no raw newlines, so one data: line carries it (the SSE format splits events at blank lines).
    c.stream.write(`event: ${event}\ndata: ${data}\n\n`);
  }
}
