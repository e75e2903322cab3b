// Typed outcomes of the benchmark harness (one class per condition, with a fixed name).

/** A benchmark whose measuring code does not exist yet (or cannot run here): run.ts records null and the reason. */
export class BenchmarkUnavailableError extends Error {
  override readonly name = 'BenchmarkUnavailableError';
  constructor(
    readonly benchmark: string,
    readonly reason: string,
  ) {
    super(`${benchmark}: not available yet: ${reason}`);
  }
}
