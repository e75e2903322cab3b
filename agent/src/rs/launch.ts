// How the vCPE's autoscaler runs a Relay Server instance (paper §3.1: RS instances scale out with load): as a child
// process of the process that embeds the DC (here, the tests), or as a systemd transient unit (`systemd-run`, the
// image: the instance outlives nothing it should not, and journald keeps its log). One interface, so the policy
// (rs/autoscale.ts) never knows which it got.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';

/** One instance to run: `ntm rs` with these arguments. */
export interface RsInstanceSpec {
  /** Unique among the instances (a unit name on systemd): ntm-rs-scale-N. */
  readonly name: string;
  readonly dataDir: string;
  /** Arguments after `ntm rs`. */
  readonly args: readonly string[];
}

export interface RsProcess {
  readonly name: string;
  /** Whether it is still running, as far as this process knows. */
  running(): boolean;
  /** Stops it (SIGTERM, then SIGKILL after 5 s); resolves once it is gone. */
  stop(): Promise<void>;
}

export interface RsLauncher {
  readonly kind: 'process' | 'systemd';
  start(spec: RsInstanceSpec): Promise<RsProcess>;
}

/** The `node … ntm.js` command line an instance runs (the same Node.js and the same build as this process). */
export interface NtmCommand {
  readonly node: string;
  readonly nodeFlags: readonly string[];
  readonly ntm: string;
}

/** Child processes: the instance's output goes to rs.log in its data directory. */
export class ProcessLauncher implements RsLauncher {
  readonly kind = 'process' as const;
  constructor(private readonly cmd: NtmCommand) {}

  start(spec: RsInstanceSpec): Promise<RsProcess> {
    const log = createWriteStream(join(spec.dataDir, 'rs.log'), { flags: 'a' });
    const child: ChildProcess = spawn(this.cmd.node, [...this.cmd.nodeFlags, this.cmd.ntm, 'rs', ...spec.args], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.pipe(log);
    child.stderr!.pipe(log);
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    return new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('spawn', () =>
        resolve({
          name: spec.name,
          running: () => child.exitCode === null && child.signalCode === null,
          stop: async () => {
            if (child.exitCode !== null || child.signalCode !== null) return;
            child.kill('SIGTERM');
            const t = setTimeout(() => child.kill('SIGKILL'), 5000);
            await exited;
            clearTimeout(t);
          },
        }),
      );
    });
  }
}

/** Runs a command; resolves with its exit code and output (injectable: the unit test records the command lines). */
export type Exec = (file: string, args: readonly string[]) => Promise<{ code: number; stdout: string; stderr: string }>;

export const execCommand: Exec = (file, args) =>
  new Promise((resolve) => {
    execFile(file, [...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });

/**
 * systemd transient units: `systemd-run --unit NAME --collect` (the unit disappears when it ends, failed or not),
 * restarted on failure, hardened as the image's own units are; `systemctl stop` retires it.
 */
export class SystemdLauncher implements RsLauncher {
  readonly kind = 'systemd' as const;
  constructor(
    private readonly cmd: NtmCommand,
    private readonly exec: Exec = execCommand,
  ) {}

  async start(spec: RsInstanceSpec): Promise<RsProcess> {
    const unit = `${spec.name}.service`;
    const run = this.exec;
    const r = await run('systemd-run', [
      '--unit',
      unit,
      '--collect',
      '--quiet',
      '--property=Restart=on-failure',
      '--property=RestartSec=2',
      '--property=NoNewPrivileges=yes',
      '--property=ProtectSystem=strict',
      `--property=ReadWritePaths=${spec.dataDir}`,
      '--property=PrivateTmp=yes',
      '--',
      this.cmd.node,
      ...this.cmd.nodeFlags,
      this.cmd.ntm,
      'rs',
      ...spec.args,
    ]);
    if (r.code !== 0) throw new Error(`systemd-run ${unit} failed (${r.code}): ${r.stderr.trim()}`);
    let stopped = false;
    return {
      name: spec.name,
      running: () => !stopped,
      stop: async () => {
        if (stopped) return;
        stopped = true;
        await run('systemctl', ['stop', unit]);
      },
    };
  }
}
