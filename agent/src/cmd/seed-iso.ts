// The per-subscriber boot seed of `ntm provision --seed-iso`: a cloud-init NoCloud seed (an ISO 9660 volume labelled
// "cidata" with `meta-data`, `user-data` and, when the subscriber's LAN card is known, `network-config` (seed-network.ts)
// at its root, cloud-init's "NoCloud" datasource) that also carries the subscriber's bundle in `ntm/`. The ISP's VM manager attaches it to the household's agent VM as a CD-ROM or disk;
// the image's first-boot script (firmware/first-boot) mounts it and installs the bundle. OpenStack (the paper's §5
// orchestrator) and libvirt hand such seeds to VMs unchanged; real cloud-init ignores the extra directory.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NtmError } from '../types/errors.js';
import { lanNetworkConfig } from './seed-network.js';

/** The seed could not be written (genisoimage missing or failing); `detail` is its own message. */
export class SeedIsoError extends NtmError {
  override readonly name = 'SeedIsoError';
  override readonly code = 'seed_iso';
  override readonly expose = true;
  constructor(
    readonly iso: string,
    readonly detail: string,
  ) {
    super(`cannot write the seed ${iso}: ${detail}`);
  }
}

/** The volume label cloud-init's NoCloud datasource looks for. */
export const SEED_LABEL = 'cidata';

/** The VM's host name: the subscriber id in host-name characters (RFC 1123: letters, digits, '-'). */
export function seedHostname(subscriberId: string): string {
  return `ntm-${subscriberId.toLowerCase().replace(/[^a-z0-9-]/g, '-')}`.slice(0, 63).replace(/-+$/, '');
}

/** NoCloud meta-data (YAML): the instance id changes per subscriber, so cloud-init-aware tools see a new instance. */
export function seedMetaData(subscriberId: string): string {
  return `instance-id: ntm-${subscriberId}\nlocal-hostname: ${seedHostname(subscriberId)}\n`;
}

export const SEED_USER_DATA = '#cloud-config\n# The NTMobile agent image installs the subscriber bundle from ntm/ on this volume (firmware/first-boot).\n';

/** The household LAN card a seed names (its network-config): the card's MAC address, and its address if fixed. */
export interface SeedLan {
  readonly mac: string;
  readonly address?: string;
}

/**
 * Writes `bundleDir`/seed.iso from the bundle's agent.json, setup-code and dc.key (the agent's identity), with
 * meta-data and user-data written beside them, and network-config when the subscriber's LAN card is known.
 * Mode 0600: the volume holds the household's setup code. Written to a temporary name, then renamed.
 */
export function writeSeedIso(bundleDir: string, subscriberId: string, lan?: SeedLan): string {
  const iso = join(bundleDir, 'seed.iso');
  writeFileSync(join(bundleDir, 'meta-data'), seedMetaData(subscriberId), { mode: 0o600 });
  writeFileSync(join(bundleDir, 'user-data'), SEED_USER_DATA, { mode: 0o600 });
  const networkConfig = join(bundleDir, 'network-config');
  if (lan) writeFileSync(networkConfig, lanNetworkConfig(lan.mac, lan.address), { mode: 0o600 });
  else rmSync(networkConfig, { force: true });
  const tmp = `${iso}.${process.pid}.tmp`;
  // -R (Rock Ridge) keeps the files' modes; -J (Joliet) for other readers; graft points place the bundle under ntm/.
  const r = spawnSync('genisoimage', [
    '-quiet', '-output', tmp, '-volid', SEED_LABEL, '-R', '-J', '-graft-points',
    `meta-data=${join(bundleDir, 'meta-data')}`,
    `user-data=${join(bundleDir, 'user-data')}`,
    ...(lan ? [`network-config=${networkConfig}`] : []),
    `ntm/agent.json=${join(bundleDir, 'agent.json')}`,
    `ntm/setup-code=${join(bundleDir, 'setup-code')}`,
    ...(existsSync(join(bundleDir, 'dc.key')) ? [`ntm/dc.key=${join(bundleDir, 'dc.key')}`] : []),
  ], { encoding: 'utf8' });
  if (r.error) throw new SeedIsoError(iso, `genisoimage: ${r.error.message} (scripts/setup installs it)`);
  if (r.status !== 0) throw new SeedIsoError(iso, r.stderr.trim() || `genisoimage exited with ${r.status}`);
  // genisoimage creates its output with the umask's mode; the seed holds a secret.
  chmodSync(tmp, 0o600);
  renameSync(tmp, iso);
  return iso;
}
