// The vCPE's RS autoscaler (paper §3.1: "management of the vCPE lets DC/RS instances scale out with load"): beside
// the DC it embeds, it runs Relay Server instances (rs/launch.ts: child processes, or systemd transient units on the
// image), starts another when the relayed load passes rsscale.upAt, and retires the newest when the load would fit in
// the others for rsscale.idleS: it drains it first (the DC routes nothing new through it while another RS can serve,
// dc/route.ts) and stops it once none of its tunnels is active any more (their ends moved to a new route, or went
// quiet), or after rsscale.drainMaxS. Each instance announces itself to the DC (signed HELLO, sealed load reports);
// the autoscaler makes its key first and tells the DC to accept that ID.
//
// The decision is a pure function of the DC's relay figures (decide), so its rules are unit-tested on their own.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { SectionConfig } from '../config/schema.js';
import type { Logger } from '../util/log.js';
import type { RsLauncher, RsProcess } from './launch.js';

/** What the autoscaler reads of one RS the DC knows (dc status `relays`). */
export interface RelayFigures {
  readonly id: string;
  readonly tunnels: number | null;
  readonly capacity: number | null;
  readonly directedSinceReport: number;
  readonly draining: boolean;
}

/** What the autoscaler needs of the DC it runs beside (DcServer has these). */
export interface ScaledDc {
  relayStatus(): ReadonlyArray<Record<string, unknown>>;
  acceptRelay(id: string): void;
  drainRelay(id: string, draining?: boolean): void;
  forgetRelay(id: string): void;
}

export interface Instance {
  readonly slot: number;
  readonly id: string;
  readonly proc: RsProcess;
  readonly startedAt: number;
  drainingSince?: number;
}

export type Decision = { readonly kind: 'none' } | { readonly kind: 'start' } | { readonly kind: 'drain'; readonly id: string } | { readonly kind: 'retire'; readonly id: string; readonly why: string };

/** The state decide() keeps between calls: since when the load has been low enough to drain the newest instance. */
export interface DecideMemory {
  lowSince?: number;
}

/**
 * One step of the policy at `now` (ms). Load = active tunnels (plus routes the DC directed since the last report) over
 * capacity, summed over the RSs not draining. In order: retire a draining instance with no active tunnel (or drained
 * for too long); start one below rsscale.min, or at upAt and over while fewer than max run, draining ones included (one at a time: not while a started
 * instance has not reported yet); drain the newest instance (above min) once the load has stayed under downAt of the
 * capacity left without it for idleS.
 */
export function decide(cfg: SectionConfig<'rsscale'>, relays: readonly RelayFigures[], instances: readonly Instance[], now: number, mem: DecideMemory): Decision {
  const byId = new Map(relays.map((r) => [r.id, r]));
  for (const i of instances) {
    if (i.drainingSince === undefined) continue;
    const r = byId.get(i.id);
    if (!r) return { kind: 'retire', id: i.id, why: 'the DC no longer hears it' };
    if (r.tunnels === 0 && r.directedSinceReport === 0) return { kind: 'retire', id: i.id, why: 'no active tunnel' };
    if (now - i.drainingSince >= cfg.drainMaxS * 1000) return { kind: 'retire', id: i.id, why: 'drained for rsscale.drainMaxS' };
  }
  const serving = instances.filter((i) => i.drainingSince === undefined);
  if (serving.length < cfg.min) return { kind: 'start' };
  // A started instance counts once the DC has its first load report.
  const pending = serving.some((i) => !(byId.get(i.id)?.capacity ?? 0));
  let tunnels = 0;
  let capacity = 0;
  for (const r of relays) {
    if (r.draining || !r.capacity) continue;
    tunnels += (r.tunnels ?? 0) + r.directedSinceReport;
    capacity += r.capacity;
  }
  if (capacity === 0) return { kind: 'none' };
  // rsscale.max counts every running instance, a draining one too (it is still a process, and its drain may have just
  // moved routes onto the others, which their next load report counts twice for a moment).
  if (!pending && instances.length < cfg.max && tunnels / capacity >= cfg.upAt) {
    delete mem.lowSince;
    return { kind: 'start' };
  }
  const newest = serving.length > cfg.min ? serving.reduce((a, b) => (b.startedAt > a.startedAt ? b : a)) : undefined;
  const newestCap = newest ? (byId.get(newest.id)?.capacity ?? 0) : 0;
  if (!newest || pending || tunnels > cfg.downAt * (capacity - newestCap)) {
    delete mem.lowSince;
    return { kind: 'none' };
  }
  mem.lowSince ??= now;
  if (now - mem.lowSince < cfg.idleS * 1000) return { kind: 'none' };
  delete mem.lowSince;
  return { kind: 'drain', id: newest.id };
}

export interface AutoscalerOptions {
  readonly config: SectionConfig<'rsscale'>;
  readonly dc: ScaledDc;
  readonly launcher: RsLauncher;
  /** Where the instances report: the DC's "0xID@addr:port". */
  readonly dcRef: string;
  /** The addresses instances advertise (the DC host's, one per family), without port. */
  readonly advertise: readonly string[];
  /** Directory of instance N's key is dataDir/rs-N. */
  readonly dataDir: string;
  /** The ID of the RS key at this path, the key made if it is missing (cmd/common.ts loadOrCreateIdentity). */
  readonly identityOf: (keyFile: string) => Promise<string>;
  readonly log: Logger;
  readonly clock?: () => number;
}

export class Autoscaler {
  private readonly instances: Instance[] = [];
  private readonly mem: DecideMemory = {};
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private readonly log: Logger;
  /** Instances started and retired since start (status). */
  private started = 0;
  private retired = 0;

  constructor(private readonly o: AutoscalerOptions) {
    this.log = o.log.child({ role: 'rs-autoscaler' });
  }

  private now(): number {
    return this.o.clock ? this.o.clock() : performance.now();
  }

  start(): void {
    this.timer = setInterval(() => void this.step(), 1000);
    this.timer.unref();
    void this.step();
  }

  /** One decision and what it calls for (never two at once: starting an instance takes a moment). */
  async step(): Promise<Decision> {
    if (this.busy) return { kind: 'none' };
    this.busy = true;
    try {
      for (const i of [...this.instances]) if (!i.proc.running() && i.drainingSince === undefined) this.drop(i, 'its process ended');
      const relays = this.o.dc.relayStatus() as unknown as RelayFigures[];
      const d = decide(this.o.config, relays, this.instances, this.now(), this.mem);
      if (d.kind === 'start') await this.launch();
      else if (d.kind === 'drain') this.drain(d.id);
      else if (d.kind === 'retire') await this.retire(d.id, d.why);
      return d;
    } catch (e) {
      this.log.error('autoscaler step failed', { err: e });
      return { kind: 'none' };
    } finally {
      this.busy = false;
    }
  }

  private async launch(): Promise<void> {
    const { config: c } = this.o;
    const used = new Set(this.instances.map((i) => i.slot));
    let slot = 1;
    while (used.has(slot)) slot++;
    const dir = join(this.o.dataDir, `rs-${slot}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const id = await this.o.identityOf(join(dir, 'rs.key'));
    const port = c.basePort + slot - 1;
    this.o.dc.acceptRelay(id);
    const ep = (a: string) => (a.includes(':') ? `[${a}]:${port}` : `${a}:${port}`);
    const args = [
      '--data-dir',
      dir,
      '--listen',
      `[::]:${port}`,
      '--report-to',
      this.o.dcRef,
      ...this.o.advertise.flatMap((a) => ['--advertise', ep(a)]),
      '--capacity',
      String(c.capacityTunnels),
      '--metrics-listen',
      '',
      '--set',
      `rs.activeS=${c.activeS}`,
      '--set',
      `rs.reportS=${c.reportS}`,
    ];
    const proc = await this.o.launcher.start({ name: `ntm-rs-scale-${slot}`, dataDir: dir, args });
    this.instances.push({ slot, id, proc, startedAt: this.now() });
    this.started++;
    this.log.info('relay server instance started', { id, slot, port, backend: this.o.launcher.kind, instances: this.instances.length });
  }

  private drain(id: string): void {
    const i = this.instances.find((x) => x.id === id);
    if (!i) return;
    i.drainingSince = this.now();
    this.o.dc.drainRelay(id, true);
    this.log.info('relay server instance draining', { id, slot: i.slot });
  }

  private async retire(id: string, why: string): Promise<void> {
    const i = this.instances.find((x) => x.id === id);
    if (!i) return;
    await i.proc.stop();
    this.drop(i, why);
    this.retired++;
  }

  private drop(i: Instance, why: string): void {
    this.instances.splice(this.instances.indexOf(i), 1);
    this.o.dc.forgetRelay(i.id);
    this.log.info('relay server instance retired', { id: i.id, slot: i.slot, why, instances: this.instances.length });
  }

  status(): Record<string, unknown> {
    return {
      backend: this.o.launcher.kind,
      min: this.o.config.min,
      max: this.o.config.max,
      started: this.started,
      retired: this.retired,
      instances: this.instances.map((i) => ({ slot: i.slot, id: i.id, name: i.proc.name, running: i.proc.running(), draining: i.drainingSince !== undefined })),
    };
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await Promise.all(this.instances.map((i) => i.proc.stop()));
  }
}
