// Test support: network namespaces and veth pairs (iproute2) with unique names, and the processes run inside
// them, all torn down by `destroy()`, also after a failed test. Root only.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { runCommand } from '../rules.js';
import type { CommandResult, CommandRunner } from '../rules.js';

/** Why these tests cannot run here, or undefined when they can. */
export function netnsSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, NFQUEUE)';
  return undefined;
}

export class Namespaces {
  /** Unique per run: "nq" + tag + 4 random base-36 characters; names are ≤ 15 bytes for interfaces. */
  readonly prefix: string;
  private readonly made: string[] = [];
  private readonly children = new Set<ChildProcess>();

  constructor(tag: string) {
    if (!/^[a-z]{1,3}$/.test(tag)) throw new RangeError('tag: 1-3 lowercase letters');
    this.prefix = `nq${tag}${randomBytes(3).readUIntBE(0, 3).toString(36).padStart(4, '0').slice(-4)}`;
  }

  name(suffix: string): string {
    return `${this.prefix}${suffix}`;
  }

  /** Creates namespace `<prefix><suffix>` with loopback up; returns its name. */
  async add(suffix: string): Promise<string> {
    const ns = this.name(suffix);
    await must('ip', ['netns', 'add', ns]);
    this.made.push(ns);
    await this.must(ns, 'ip', ['link', 'set', 'lo', 'up']);
    return ns;
  }

  /** A veth pair between two namespaces, both ends up. Interface names get the prefix. */
  async veth(nsA: string, ifA: string, nsB: string, ifB: string): Promise<[string, string]> {
    const a = this.name(ifA);
    const b = this.name(ifB);
    await must('ip', ['link', 'add', a, 'netns', nsA, 'type', 'veth', 'peer', 'name', b, 'netns', nsB]);
    await this.must(nsA, 'ip', ['link', 'set', a, 'up']);
    await this.must(nsB, 'ip', ['link', 'set', b, 'up']);
    return [a, b];
  }

  /** Runs a command inside `ns`. */
  run(ns: string, cmd: string, args: readonly string[], input?: string): Promise<CommandResult> {
    return runCommand('ip', ['netns', 'exec', ns, cmd, ...args], input);
  }

  /** Like `run`, throwing on a non-zero exit. */
  async must(ns: string, cmd: string, args: readonly string[], input?: string): Promise<string> {
    const r = await this.run(ns, cmd, args, input);
    if (r.code !== 0) throw new Error(`[${ns}] ${cmd} ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim()}`);
    return r.stdout;
  }

  /** A CommandRunner executing inside `ns` (for the rules manager). */
  runner(ns: string): CommandRunner {
    return (cmd, args, input) => this.run(ns, cmd, args, input);
  }

  /**
   * Starts a long-running process inside `ns`; resolves once it prints a line equal to `readyLine` (its
   * stdout lines after that go to `onLine`). Killed by `destroy()` if still running.
   */
  async start(ns: string, cmd: string, args: readonly string[], readyLine = 'ready', onLine?: (line: string) => void): Promise<ChildProcess> {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const lines = createInterface({ input: child.stdout! });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${cmd} in ${ns} not ready after 15 s: ${stderr}`)), 15000);
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${cmd} in ${ns} exited (${code}) before ready: ${stderr}`));
      });
      lines.on('line', (line) => {
        if (line === readyLine) {
          clearTimeout(timer);
          resolve();
        } else onLine?.(line);
      });
    });
    return child;
  }

  /** Kills what we started (by pid) and deletes our namespaces (with their interfaces and rules). */
  async destroy(): Promise<void> {
    for (const c of this.children) {
      if (c.pid !== undefined && c.exitCode === null) {
        try {
          process.kill(c.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    // `ip netns exec` runs the command as its own child: the process inside may outlive the wrapper's kill.
    for (const ns of this.made) {
      const r = await runCommand('ip', ['netns', 'pids', ns]);
      for (const pid of r.stdout.split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    for (const ns of this.made.splice(0).reverse()) await runCommand('ip', ['netns', 'del', ns]);
  }

  /** Names of namespaces with our prefix still present (should be none after `destroy`). */
  async leftovers(): Promise<string[]> {
    const r = await runCommand('ip', ['netns', 'list']);
    return r.stdout
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter((n) => n.startsWith(this.prefix));
  }
}

async function must(cmd: string, args: readonly string[]): Promise<void> {
  const r = await runCommand(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim()}`);
}
