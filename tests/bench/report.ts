// `npm run bench:report`: the last benchmark run (bench-results.json, or --file FILE) against issue 6's goals:
// registration within 1 ms of one MN–DC_MN RTT, communication start within 5% of our critical-path bound, a DC at
// ≥ 5,000 registrations/s on one core and ≤ 512 MiB with 100,000 terminals, the agent ≤ 100 MB, handover ≤ 2 × RTT +
// 20 ms, throughput ≥ wireguard-go's. Prints a table; `--json` prints the rows instead. Exit status 0 either way:
// a benchmark is a measurement, not a test.
import { DEFAULT_OUT } from './run.js';
import { goalRows, goalTable, readResults } from './results.js';

function main(argv: string[]): number {
  const i = argv.indexOf('--file');
  const path = i >= 0 ? argv[i + 1] : DEFAULT_OUT;
  if (!path) {
    process.stderr.write('usage: npm run bench:report -- [--file bench-results.json] [--json]\n');
    return 2;
  }
  const f = readResults(path);
  if (!f) {
    process.stderr.write(`no results at ${path}: run \`npm run bench\` first\n`);
    return 1;
  }
  if (argv.includes('--json')) {
    process.stdout.write(`${JSON.stringify(goalRows(f), null, 2)}\n`);
    return 0;
  }
  process.stdout.write(`${path}: ${f.date}, commit ${f.commit}, ${f.machine.cpus} × ${f.machine.model}, node ${f.machine.node}\n\n`);
  process.stdout.write(`${goalTable(f)}\n`);
  const notes = Object.entries(f.notes ?? {});
  if (notes.length > 0) process.stdout.write(`\nnotes:\n${notes.map(([k, v]) => `  ${k}: ${v}`).join('\n')}\n`);
  return 0;
}

if (import.meta.filename === process.argv[1]) process.exit(main(process.argv.slice(2)));
