// Helpers for the vector tests: where the checked-in JSON lives (the source tree, not dist/) and hex decoding.

import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** dist/tests/vectors/ → repository root. */
export const REPO_ROOT = resolve(import.meta.dirname, '..', '..', '..');
export const VECTORS_DIR = join(REPO_ROOT, 'tests', 'vectors');

export function loadVectors<T>(file: string): T {
  return JSON.parse(readFileSync(join(VECTORS_DIR, file), 'utf8')) as T;
}

/** Hex (no prefix) to bytes; throws on malformed hex so a damaged vector file fails loudly. */
export function h(hex: string): Buffer {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new Error(`bad hex in vector file: ${hex.slice(0, 20)}…`);
  return Buffer.from(hex, 'hex');
}
