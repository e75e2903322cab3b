// Records the image test's figures in the benchmarks' results file (bench-results.json, results.image), beside the
// figures `npm run bench` writes, so `npm run bench:report` and the README read them from one place.
import { writeFileSync } from 'node:fs';
import { commit, DEFAULT_OUT, machine } from '../bench/run.js';
import { readResults, type ImageFigures, type ResultsFile } from '../bench/results.js';

export type { ImageFigures };

export function recordImageFigures(figures: ImageFigures, out = DEFAULT_OUT): void {
  const prev = readResults(out);
  const file: ResultsFile = {
    machine: prev?.machine ?? machine(),
    date: prev?.date ?? new Date().toISOString(),
    commit: prev?.commit ?? commit(),
    results: { ...(prev?.results ?? {}), image: figures },
    ...(prev?.notes ? { notes: prev.notes } : {}),
  };
  writeFileSync(out, `${JSON.stringify(file, null, 2)}\n`);
}
