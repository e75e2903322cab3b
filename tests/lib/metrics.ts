// Reading Prometheus text exposition (format 0.0.4) the way a test asserts on it: sample "name{labels}" → value.
import type { Testbed } from '../../scripts/netns/index.js';
import { curl } from './ntm.js';

export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const sp = line.lastIndexOf(' ');
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

/** Scrapes /metrics on a testbed host's loopback (where the roles bind it by default). */
export async function scrapeIn(tb: Testbed, host: string, port: number): Promise<Map<string, number>> {
  return parseMetrics(await curl(tb, host, `http://127.0.0.1:${port}/metrics`));
}
