// The test command's driver: type check, lint, then every test tier with Node's own runner, so the run ends in its summary lines.
// Tiers run in this order (fast first): unit, vectors, evm (a real local chain on loopback), netns (root; real packets),
// browser (real Chromium), bench (smoke runs).
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..', '..');
const TIERS = ['unit', 'vectors', 'evm', 'netns', 'browser', 'bench'] as const;
/** Tiers run only when named: `image` builds and boots the agent VM image (tens of minutes; scripts/image-test). */
const OPT_IN_TIERS = ['image'] as const;

function parseArgs(argv: string[]): { tiers: string[]; only: string | undefined; skipStatic: boolean } {
  let tiers: string[] = [...TIERS];
  let only: string | undefined;
  let skipStatic = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--tier') tiers = (argv[++i] ?? '').split(',').filter(Boolean);
    else if (a === '--only') only = argv[++i];
    else if (a === '--no-static') skipStatic = true;
    else if (a === '--help' || a === '-h') {
      console.log('usage: npm test -- [--tier unit,vectors,evm,netns,browser,bench,image] [--only SUBSTRING] [--no-static]');
      console.log(`  default: ${TIERS.join(',')}; ${OPT_IN_TIERS.join(', ')} only when named`);
      process.exit(0);
    } else {
      console.error(`unknown argument: ${a}`);
      process.exit(2);
    }
  }
  for (const t of tiers) {
    if (![...TIERS, ...OPT_IN_TIERS].includes(t as never)) {
      console.error(`unknown tier "${t}"; tiers are ${[...TIERS, ...OPT_IN_TIERS].join(', ')}`);
      process.exit(2);
    }
  }
  return { tiers, only, skipStatic };
}

function testFiles(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const n of names.sort()) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) out.push(...testFiles(p));
    else if (n.endsWith('.test.js')) out.push(p);
  }
  return out;
}

function run(cmd: string, args: string[]): number {
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: 'inherit' });
  return r.status ?? 1;
}

const { tiers, only, skipStatic } = parseArgs(process.argv.slice(2));

if (!skipStatic) {
  console.log('== type check (tsc) ==');
  if (run('npx', ['tsc', '-p', 'tsconfig.json', '--noEmit']) !== 0) process.exit(1);
  if (run('npx', ['tsc', '-p', 'web-ui/client/tsconfig.json', '--noEmit']) !== 0) process.exit(1);
  console.log('== lint (eslint) ==');
  if (run('npx', ['eslint', '--max-warnings', '0', '.']) !== 0) process.exit(1);
}

const files: string[] = [];
for (const t of tiers) files.push(...testFiles(join(ROOT, 'dist', 'tests', t)));
const selected = only ? files.filter((f) => f.includes(only)) : files;
if (selected.length === 0) {
  console.error('no test files selected (did the build run?)');
  process.exit(1);
}
if (tiers.some((t) => t === 'netns' || t === 'browser' || t === 'bench' || t === 'image') && process.getuid?.() !== 0) {
  console.error('the netns, browser, bench and image tiers need root (network namespaces, NFQUEUE, debootstrap)');
  process.exit(1);
}

console.log(`== tests: ${tiers.join(', ')} (${selected.length} files) ==`);
// One file at a time: the netns tiers measure delays on a 2-core machine and must not compete for it.
const code = run(process.execPath, [
  '--enable-source-maps',
  '--test',
  '--test-concurrency=1',
  '--test-reporter=spec',
  ...selected,
]);
process.exit(code);
