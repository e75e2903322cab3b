// Wiring of the vCPE's RS autoscaler (rs/autoscale.ts) into a process that embeds a DC (`ntm agent`, `ntm dc`): the
// launcher rsscale.backend names, running this very build of `ntm rs` with this Node.js.
import { join } from 'node:path';
import type { SectionConfig } from '../config/schema.js';
import type { Logger } from '../util/log.js';
import { Autoscaler, type ScaledDc } from '../rs/autoscale.js';
import { ProcessLauncher, SystemdLauncher, type NtmCommand } from '../rs/launch.js';
import { loadOrCreateIdentity } from './common.js';
import { NODE_FLAGS } from './node-flags.js';

/** Starts the autoscaler when rsscale.max > 0; undefined otherwise. */
export function startRsAutoscaler(o: {
  readonly config: SectionConfig<'rsscale'>;
  readonly dc: ScaledDc;
  /** The DC's "0xID@addr:port" as its instances reach it. */
  readonly dcRef: string;
  readonly advertise: readonly string[];
  /** The DC's data directory (instances under rs-scale/ unless rsscale.dataDir says). */
  readonly dcDataDir: string;
  readonly log: Logger;
}): Autoscaler | undefined {
  if (o.config.max === 0) return undefined;
  const cmd: NtmCommand = { node: process.execPath, nodeFlags: NODE_FLAGS.rs, ntm: join(import.meta.dirname, 'ntm.js') };
  const launcher = o.config.backend === 'systemd' ? new SystemdLauncher(cmd) : new ProcessLauncher(cmd);
  const scaler = new Autoscaler({
    config: o.config,
    dc: o.dc,
    launcher,
    dcRef: o.dcRef,
    advertise: o.advertise,
    dataDir: o.config.dataDir || join(o.dcDataDir, 'rs-scale'),
    identityOf: async (file) => (await loadOrCreateIdentity(file)).idHex,
    log: o.log,
  });
  scaler.start();
  return scaler;
}
