// Every external command the project runs is installed by scripts/setup (issue 11, item 1: a fresh Debian machine
// failed the test command because setup did not install busybox, which tests/netns/nfqueue-rewrite.test.ts runs).
// The commands are read from the sources (the argv[0] of every execFile/spawn/exec in tests/, scripts/, agent/src/
// and web-ui/server, the commands run inside namespaces and `sh -c` scripts, and the commands of the bash scripts);
// each is then looked up on this machine and mapped to its Debian package by dpkg. A command passes if its package
// is one scripts/setup installs, or is part of Debian's base system (Essential: yes or Priority: required: what
// debootstrap lays down on every Debian 12 machine), or is Node.js itself (setup's prerequisite, checked by it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..', '..', '..');
const TS_DIRS = ['tests', 'scripts', 'agent/src', 'web-ui/server'];
const SELF = 'tests/unit/setup-packages.test.ts';
const SHELL_FILES = ['scripts/setup', 'scripts/test', 'scripts/testbed', 'scripts/demo', 'scripts/image-test', 'scripts/dashboard-shot', 'firmware/build-image', 'firmware/first-boot', '.ci/run'];
/** Node.js is setup's prerequisite (it refuses to run without Node >= 20.19), not one of its packages. */
const NODE_PACKAGES = new Set(['nodejs']);
/** Commands the code probes for and does without where they are absent (no package of setup's would bring them). */
const OPTIONAL = new Map([
  ['resolvectl', 'ntm up registers .ntm with systemd-resolved only where it runs (installing it would take over the machine\'s DNS)'],
  ['udevadm', 'only firmware/first-boot runs it, inside the agent image, whose build installs udev (debootstrap --include=udev); a test machine needs no device manager'],
]);

function files(dir: string, ext: string): string[] {
  const out: string[] = [];
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) out.push(...files(p, ext));
    else if (n.endsWith(ext) && !n.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** A quoted literal without interpolation: '...', "..." or `...`. */
const Q = String.raw`(?:'([^'\s$]+)'|"([^"\s$]+)"|` + '`([^`\\s$]+)`)';
const first = (m: RegExpMatchArray): string => m.slice(1).find((x) => x !== undefined) ?? '';

const TS_SHAPES: readonly RegExp[] = [
  // spawn('ip', [...]), execFile('avahi-resolve', [...]), run('ip', [...]), sh('ip', [...]): a bare call of a runner.
  new RegExp(String.raw`(?<![\w$.])(?:spawn|exec|run|sh|start)[\w$]*\(\s*${Q}\s*,\s*\[`, 'gi'),
  // nets.run(ns, 'busybox', [...]), nets.must(ns, 'ip', [...]): a method taking a place, then the command.
  new RegExp(String.raw`\.[A-Za-z_$][\w$]*\(\s*[\w$.]+\s*,\s*${Q}\s*,\s*\[`, 'g'),
  // tb.exec(host, ['curl', ...]), tb.spawn(host, ['tcpdump', ...]): argv run inside a testbed host.
  new RegExp(String.raw`\.(?:exec|spawn)\(\s*[^,()]+,\s*\[\s*${Q}`, 'g'),
  // ok(tb, 'vcpe', ['wg', ...]): a helper taking a testbed, a host and argv (ntm(tb, host, [...]) takes ntm's subcommands).
  new RegExp(String.raw`(?<![\w$.])(?!ntm\()[A-Za-z_$][\w$]*\(\s*[\w$.]+\s*,\s*'[^']*'\s*,\s*\[\s*${Q}`, 'g'),
  // ['netns', 'exec', ns, 'unshare', ...]: the command run by `ip netns exec`.
  new RegExp(String.raw`'netns',\s*'exec',\s*[^,]+,\s*${Q}`, 'g'),
  // ? ['chrt', '-f', '10'] : []: an argv prefix chosen at run time (not `= ['dc', '--data-dir', ...]`: ntm's argv).
  new RegExp(String.raw`\?\s*\[\s*${Q}\s*,\s*'-`, 'g'),
  // '/usr/bin/chromium': an executable named by its path.
  /'((?:\/usr)?\/s?bin\/[^'\s]+)'/g,
];

/** Shell text (a bash file or an `sh -c` script) -> the commands it runs (first words, after exec/command -v). */
function shellCommands(text: string): string[] {
  const KEYWORDS = new Set(['if', 'then', 'else', 'elif', 'fi', 'for', 'in', 'do', 'done', 'while', 'until', 'case', 'esac', 'function', '!', '{', '}', '[[', ']]']);
  const BUILTINS = new Set([
    'set', 'cd', 'echo', 'printf', 'exit', 'return', 'local', 'export', 'read', 'shift', 'trap', 'wait', 'true', 'false',
    'test', '[', ':', '.', 'source', 'eval', 'unset', 'readonly', 'declare', 'break', 'continue', 'mapfile',
  ]);
  const defined = new Set([...text.matchAll(/^\s*([A-Za-z_][\w-]*)\s*\(\)\s*\{/gm)].map((m) => m[1]!));
  let body = text
    .replace(/<<'?(\w+)'?[^\n]*\n[\s\S]*?\n\1\b/g, '') // heredoc bodies are data
    .replace(/^\s*#.*$/gm, '')
    .replace(/\s#[^\n'"]*$/gm, '')
    .replace(/\b\w+=\([^)]*\)/g, '') // array assignments hold words, not commands
    .replace(/\$?\(\((?:[^()]|\([^()]*\))*\)\)/g, 'Q') // arithmetic, $(( ... )) and (( ... )), runs nothing
    .replace(/\\\n/g, ' ');
  // Command substitutions run commands wherever they stand (even inside double quotes): lift them out, innermost first.
  const lifted: string[] = [];
  for (let prev = ''; prev !== body; ) {
    prev = body;
    body = body.replace(/\$\(([^()]*)\)/g, (_, inner: string) => (lifted.push(inner), 'Q'));
  }
  // What remains quoted is data (messages, node -e programs).
  body = [body, ...lifted].join('\n').replace(/'[^']*'|"(?:[^"\\]|\\.)*"/g, 'Q');
  const out: string[] = [];
  for (const piece of body.split(/\n|;|&&|\|\||\||\$\(|`|\(|\)|\bthen\b|\bdo\b|\belse\b/)) {
    const words = piece.trim().split(/\s+/).filter(Boolean);
    if (words[0] === 'for' || words[0] === 'case') continue; // `for p in WORDS`: names and words, no command
    while (words.length > 0 && (/^\w+=/.test(words[0]!) || KEYWORDS.has(words[0]!) || words[0] === 'exec')) words.shift();
    let w = words[0];
    if (w === 'command' && words[1] === '-v') w = words[2];
    if (!w || BUILTINS.has(w) || defined.has(w)) continue;
    out.push(w);
  }
  return out;
}

/** command -> where it is run from (file list), read from the sources. */
function commandsInSources(): Map<string, Set<string>> {
  const found = new Map<string, Set<string>>();
  const add = (cmd: string, where: string): void => {
    if (!/^(?:\/[\w./+-]+|[a-z][\w.+-]*)$/.test(cmd)) return; // a variable, a flag or a relative path: not a package's
    if (!found.has(cmd)) found.set(cmd, new Set());
    found.get(cmd)!.add(where);
  };
  for (const dir of TS_DIRS) {
    for (const file of files(join(ROOT, dir), '.ts')) {
      const rel = relative(ROOT, file);
      if (rel === SELF) continue; // its own lists of commands are not commands run
      const text = readFileSync(file, 'utf8');
      for (const re of TS_SHAPES) for (const m of text.matchAll(re)) add(first(m), rel);
      // `sh -c SCRIPT` with a literal script, and the testbed's generated scripts (`run CMD ...`, `nft -f - <<...`).
      for (const m of text.matchAll(/'(?:sh|bash)',\s*'-c',\s*(?:'([^']*)'|`([^`]*)`)/g)) for (const c of shellCommands(m[1] ?? m[2] ?? '')) add(c, rel);
      if (text.includes("'run() {")) for (const m of text.matchAll(/['`]run ([a-z][\w.+-]*) /g)) add(m[1]!, rel);
      for (const m of text.matchAll(/push\(\s*`([a-z][\w.+-]*) -[^`]*<</g)) add(m[1]!, rel);
      // Tool tables (e.g. the firewall's iptables-nft-save/-restore and nft).
      for (const t of text.matchAll(/_TOOLS\b[^=]*=\s*\{([^}]*)\}/g)) for (const v of t[1]!.matchAll(/:\s*'([^']+)'/g)) add(v[1]!, rel);
    }
  }
  for (const f of SHELL_FILES) for (const c of shellCommands(readFileSync(join(ROOT, f), 'utf8'))) add(c, f);
  return found;
}

/** The Debian packages scripts/setup installs (its RUNTIME_PACKAGES and APT_PACKAGES arrays, and --bench's BENCH_PACKAGES). */
function setupPackages(): Set<string> {
  const text = readFileSync(join(ROOT, 'scripts/setup'), 'utf8');
  const out = new Set<string>();
  for (const list of ['RUNTIME_PACKAGES', 'APT_PACKAGES', 'BENCH_PACKAGES']) {
    const m = new RegExp(`^${list}=\\(([^)]*)\\)`, 'm').exec(text);
    assert.ok(m, `scripts/setup has no ${list}=( ... ) list`);
    for (const p of m[1]!.replace(/#.*$/gm, '').split(/\s+/).filter(Boolean)) out.add(p);
  }
  return out;
}

function which(cmd: string): string | undefined {
  if (cmd.startsWith('/')) return cmd;
  // Debian's directories first: a pyenv shim or /usr/local copy earlier in PATH says nothing about a fresh machine.
  const dirs = ['/usr/sbin', '/usr/bin', '/sbin', '/bin', ...(process.env.PATH ?? '').split(':')];
  for (const d of dirs) {
    try {
      accessSync(join(d, cmd), constants.X_OK);
      return join(d, cmd);
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** Every candidate path for a file: itself, its target, and their /usr-merged twins (dpkg records /bin/ip, not /usr/bin/ip). */
function candidates(path: string): string[] {
  let real = path;
  try {
    real = realpathSync(path);
  } catch {
    // a dangling link: dpkg may still know the path
  }
  const twin = (p: string): string => (p.startsWith('/usr/') ? p.slice(4) : '/usr' + p);
  return [...new Set([path, twin(path), real, twin(real)])];
}

/** path -> owning Debian package, for all paths in one dpkg-query call (diversion lines skipped). */
function owners(paths: readonly string[]): Map<string, string> {
  const r = spawnSync('dpkg-query', ['-S', ...paths], { encoding: 'utf8' });
  const out = new Map<string, string>();
  for (const line of r.stdout.split('\n')) {
    const m = /^([^\s:,]+)(?::\w+)?(?:, [^:]+)*: (\/.*)$/.exec(line);
    if (m && !line.startsWith('diversion ')) out.set(m[2]!, m[1]!);
  }
  return out;
}

/** The packages apt installs along with `pkgs` (their Depends and Pre-Depends, one level, as installed here). */
function dependencies(pkgs: readonly string[]): Set<string> {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Depends}, ${Pre-Depends}\n', ...pkgs], { encoding: 'utf8' });
  const out = new Set<string>();
  for (const alt of r.stdout.split(/[,|\n]/)) {
    const name = alt.trim().split(/[\s:(]/)[0];
    if (name) out.add(name);
  }
  return out;
}

/** Packages of Debian's base system: Essential: yes or Priority: required. */
function baseSystem(pkgs: readonly string[]): Set<string> {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Package} ${Essential} ${Priority}\n', ...pkgs], { encoding: 'utf8' });
  const out = new Set<string>();
  for (const line of r.stdout.split('\n')) {
    const [pkg, essential, priority] = line.split(' ');
    if (pkg && (essential === 'yes' || priority === 'required')) out.add(pkg);
  }
  return out;
}

test('the source scan finds the commands it must (it is not blind)', () => {
  const found = commandsInSources();
  // One of each shape: a bare spawn, a method with the command second, a testbed exec, a (tb, host, argv) helper,
  // ip netns exec, a tool table, an argv prefix, a path constant, the testbed's generated shell, a bash script's command.
  for (const c of ['ip', 'busybox', 'curl', 'wg', 'unshare', 'iptables-nft-restore', 'chrt', '/usr/bin/chromium', 'nft', 'sha256sum']) {
    assert.ok(found.has(c), `the scan no longer finds "${c}": a calling shape changed, update TS_SHAPES`);
  }
});

test('every external command the tests and scripts run comes from a package scripts/setup installs', () => {
  const installs = setupPackages();
  const pulledIn = dependencies([...installs]);
  const problems: string[] = [];
  const located: { cmd: string; from: string; paths: string[] }[] = [];
  for (const [cmd, where] of [...commandsInSources()].sort()) {
    if (OPTIONAL.has(cmd)) continue;
    const from = [...where].slice(0, 3).join(', ');
    const path = which(cmd);
    if (!path) problems.push(`${cmd} (run in ${from}) is not installed on this machine: add its Debian package to scripts/setup`);
    else located.push({ cmd, from, paths: candidates(path) });
  }
  const owner = owners(located.flatMap((l) => l.paths));
  const pkgOf = new Map(located.map((l) => [l.cmd, l.paths.map((p) => owner.get(p)).find((p) => p !== undefined)]));
  const base = baseSystem([...new Set([...pkgOf.values()].filter((p) => p !== undefined))]);
  for (const { cmd, from, paths } of located) {
    const pkg = pkgOf.get(cmd);
    if (!pkg) problems.push(`${cmd} (${paths[0]}, run in ${from}) belongs to no Debian package: scripts/setup cannot install it`);
    else if (!installs.has(pkg) && !pulledIn.has(pkg) && !base.has(pkg) && !NODE_PACKAGES.has(pkg)) {
      problems.push(`${cmd} (run in ${from}) comes from Debian package "${pkg}", which scripts/setup does not install (nor a package it installs depends on it)`);
    }
  }
  assert.deepEqual(problems, []);
});
