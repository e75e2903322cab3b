// A connection's traffic over the last minutes as a small chart (issue 14 §3: people would rather look than read):
// two lines, sent and received per second, in one SVG drawn from the agent's history (GET /api/traffic). No chart
// library: a polyline per direction. What the chart shows is also written in its label and in words beside it.
import { bytes } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';
const W = 120;
const H = 32;
/** The scale never goes below this (bytes/s), so a few keep-alives do not fill the chart. */
const FLOOR = 1000;

export interface SparkSeries {
  readonly stepS: number;
  readonly txBytes: readonly number[];
  readonly rxBytes: readonly number[];
}

const rate = (b: number, stepS: number): string => `${bytes(Math.round(b / stepS))}/s`;

/** The points of one line: x across the window, y up from the bottom, scaled to `max` bytes per step. */
function points(series: readonly number[], max: number): string {
  const n = series.length;
  return series.map((v, i) => `${((i / Math.max(1, n - 1)) * W).toFixed(1)},${(H - 1 - (v / max) * (H - 2)).toFixed(1)}`).join(' ');
}

/**
 * The chart for one connection; `minutes` names the window in its label. Sent (to the phone) is drawn in the brand
 * colour, received in the ok colour; the label says the peaks and the last step's rates.
 */
export function sparkline(s: SparkSeries, minutes: number): HTMLElement {
  const peak = Math.max(FLOOR * s.stepS, ...s.txBytes, ...s.rxBytes);
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('width', String(W));
  svg.setAttribute('height', String(H));
  svg.setAttribute('class', 'spark');
  svg.setAttribute('role', 'img');
  const label =
    `Last ${minutes} minutes: sent at most ${rate(Math.max(0, ...s.txBytes), s.stepS)}, received at most ${rate(Math.max(0, ...s.rxBytes), s.stepS)}; ` +
    `now sent ${rate(s.txBytes.at(-1) ?? 0, s.stepS)}, received ${rate(s.rxBytes.at(-1) ?? 0, s.stepS)}`;
  svg.setAttribute('aria-label', label);
  const title = document.createElementNS(NS, 'title');
  title.textContent = label;
  svg.appendChild(title);
  for (const [cls, series] of [
    ['rx', s.rxBytes],
    ['tx', s.txBytes],
  ] as const) {
    const line = document.createElementNS(NS, 'polyline');
    line.setAttribute('class', cls);
    line.setAttribute('points', points(series, peak));
    line.setAttribute('fill', 'none');
    svg.appendChild(line);
  }
  const wrap = document.createElement('span');
  wrap.className = 'spark-wrap';
  const now = document.createElement('span');
  now.className = 'spark-now';
  now.textContent = `now: sent ${rate(s.txBytes.at(-1) ?? 0, s.stepS)}, received ${rate(s.rxBytes.at(-1) ?? 0, s.stepS)}`;
  wrap.append(svg, now);
  return wrap;
}
