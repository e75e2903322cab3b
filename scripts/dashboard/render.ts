// Draws the panels of a Grafana dashboard (docs/grafana-dashboard.json) as one static HTML page, from the answers a real
// Prometheus gave to those panels' own PromQL (scripts/dashboard-shot.ts asks it). For the README's screenshot (issue 14
// §3): Grafana is not packaged for Debian, so this stands in for its renderer, not for its queries. What it reads of
// the dashboard: gridPos (Grafana's 24-column grid), type (stat, timeseries), title, the unit, targets (expr,
// legendFormat), the `job` template variable and $__rate_interval. Pure: no I/O, so it is tested on canned answers.

/** The parts of a Grafana dashboard model (schemaVersion 39) this reads. */
export interface Dashboard {
  readonly title: string;
  readonly panels: readonly Panel[];
}

export interface Panel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly gridPos: { readonly x: number; readonly y: number; readonly w: number; readonly h: number };
  readonly fieldConfig?: { readonly defaults?: { readonly unit?: string } };
  readonly targets?: readonly { readonly refId?: string; readonly expr: string; readonly legendFormat?: string }[];
}

/** One series of a Prometheus answer (resultType matrix or vector, `data.result[i]`). */
export interface PromSeries {
  readonly metric: Readonly<Record<string, string>>;
  /** matrix: [unix seconds, "value"][] */
  readonly values?: readonly (readonly [number, string])[];
  /** vector: [unix seconds, "value"] */
  readonly value?: readonly [number, string];
}

/** What a panel's targets evaluated to, in target order. */
export type PanelData = ReadonlyMap<number, readonly (readonly PromSeries[])[]>;

export interface Variables {
  /** The `job` variable's regex ("All" is `.*`, as the dashboard's allValue says). */
  readonly job: string;
  /** Grafana's $__rate_interval for the data source's scrape interval and the query step, in seconds. */
  readonly rateIntervalS: number;
}

/**
 * Grafana's $__rate_interval: max($__interval + scrape interval, 4 × scrape interval) (Grafana docs, "Prometheus
 * template variables"); $__interval is the query step here.
 */
export function rateInterval(scrapeS: number, stepS: number): number {
  return Math.max(stepS + scrapeS, 4 * scrapeS);
}

/** A target's PromQL with the dashboard's variables put in, as Grafana would before sending it. */
export function expand(expr: string, v: Variables): string {
  return expr.replaceAll('$__rate_interval', `${v.rateIntervalS}s`).replaceAll('$job', v.job);
}

/** Grafana's legendFormat: {{label}} replaced by the series' label value; without one, the series' label set. */
export function legend(format: string | undefined, metric: Readonly<Record<string, string>>): string {
  if (format) return format.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, k: string) => metric[k] ?? '').trim();
  const { __name__: name, ...labels } = metric;
  const inner = Object.entries(labels)
    .map(([k, x]) => `${k}="${x}"`)
    .join(', ');
  return `${name ?? ''}{${inner}}`;
}

const SI = ['', ' k', ' M', ' G', ' T'];
const IEC = [' B', ' KiB', ' MiB', ' GiB', ' TiB'];

function scaled(v: number, base: number, units: readonly string[], suffix: string): string {
  let u = 0;
  let x = Math.abs(v);
  while (x >= base && u < units.length - 1) {
    x /= base;
    u++;
  }
  const digits = x === 0 ? 0 : x < 10 ? 2 : x < 100 ? 1 : 0;
  return `${v < 0 ? '-' : ''}${String(Number(x.toFixed(digits)))}${units[u]}${suffix}`;
}

/** A value in the panel's Grafana unit: short, bytes (IEC), bps (SI bits), reqps, pps. */
export function formatValue(v: number, unit: string | undefined): string {
  if (!Number.isFinite(v)) return '–';
  switch (unit) {
    case 'bytes':
      return scaled(v, 1024, IEC, '');
    case 'bps':
      return scaled(v, 1000, [' b/s', ' kb/s', ' Mb/s', ' Gb/s', ' Tb/s'], '');
    case 'reqps':
      return scaled(v, 1000, SI, ' req/s');
    case 'pps':
      return scaled(v, 1000, SI, ' p/s');
    default:
      return scaled(v, 1000, SI, '');
  }
}

/** Grafana's classic palette, in its order. */
const PALETTE = ['#73BF69', '#F2CC0C', '#8AB8FF', '#FF780A', '#F2495C', '#5794F2', '#B877D9', '#705DA0', '#37872D', '#FADE2A'];

const esc = (s: string): string => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** A round upper bound for an axis (1, 2, 2.5, 5 × 10^n, or 1024-based for bytes). */
function niceMax(v: number, unit: string | undefined): number {
  if (!(v > 0)) return 1;
  const base = unit === 'bytes' ? 1024 : 10;
  if (base === 1024) {
    let p = 1;
    while (p * 1024 <= v) p *= 1024;
    for (const m of [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]) if (m * p >= v) return m * p;
  }
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

interface Line {
  readonly name: string;
  readonly points: readonly (readonly [number, number])[];
}

const TIME = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', timeZone: 'UTC', hourCycle: 'h23' });

function timeseries(p: Panel, data: readonly (readonly PromSeries[])[], width: number, height: number, range: { from: number; to: number }): string {
  const unit = p.fieldConfig?.defaults?.unit;
  const lines: Line[] = [];
  (p.targets ?? []).forEach((t, i) => {
    for (const s of data[i] ?? []) {
      lines.push({ name: legend(t.legendFormat, s.metric), points: (s.values ?? []).map(([ts, x]) => [ts, Number(x)] as const).filter(([, x]) => Number.isFinite(x)) });
    }
  });
  if (lines.length === 0) return `<div class="nodata">No data</div>`;
  const legendRows = Math.min(3, Math.ceil(lines.length / 3));
  const plotH = height - 18 - legendRows * 18;
  const left = 64;
  const plotW = width - left - 8;
  const max = niceMax(Math.max(0, ...lines.flatMap((l) => l.points.map(([, x]) => x))), unit);
  const x = (ts: number) => left + ((ts - range.from) / (range.to - range.from)) * plotW;
  const y = (v: number) => 4 + plotH - (v / max) * plotH;
  const grid: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    grid.push(`<line x1="${left}" x2="${left + plotW}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" class="grid"/>`);
    grid.push(`<text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" class="tick" text-anchor="end">${esc(formatValue(v, unit))}</text>`);
  }
  const span = range.to - range.from;
  const every = [30, 60, 120, 300, 600, 900, 1800, 3600].find((s) => span / s <= 6) ?? 7200;
  for (let ts = Math.ceil(range.from / every) * every; ts <= range.to; ts += every) {
    grid.push(`<text x="${x(ts).toFixed(1)}" y="${plotH + 18}" class="tick" text-anchor="middle">${TIME.format(new Date(ts * 1000))}</text>`);
  }
  const paths = lines.map((l, i) => {
    // A gap in the samples (a series that was absent for more than two steps) is a gap in the line, as in Grafana.
    let d = '';
    let last = -Infinity;
    for (const [ts, v] of l.points) {
      d += `${ts - last > 3 * stepOf(l) ? 'M' : 'L'}${x(ts).toFixed(1)},${y(v).toFixed(1)}`;
      last = ts;
    }
    const c = PALETTE[i % PALETTE.length]!;
    return `<path d="${d}" stroke="${c}" fill="none" stroke-width="1.5"/>`;
  });
  const items = lines.map((l, i) => `<span class="item"><i style="background:${PALETTE[i % PALETTE.length]}"></i>${esc(l.name)}</span>`);
  return (
    `<svg width="${width}" height="${plotH + 22}" viewBox="0 0 ${width} ${plotH + 22}">${grid.join('')}${paths.join('')}</svg>` +
    `<div class="legend">${items.join('')}</div>`
  );
}

function stepOf(l: Line): number {
  const p = l.points;
  return p.length > 1 ? p[1]![0] - p[0]![0] : 1;
}

function stat(p: Panel, data: readonly (readonly PromSeries[])[]): string {
  const s = data[0]?.[0];
  const v = s?.value ? Number(s.value[1]) : s?.values?.length ? Number(s.values.at(-1)![1]) : undefined;
  if (v === undefined) return `<div class="nodata">No data</div>`;
  return `<div class="stat">${esc(formatValue(v, p.fieldConfig?.defaults?.unit))}</div>`;
}

export interface PageOptions {
  /** Page width in CSS pixels; Grafana's 24 columns share it. */
  readonly width: number;
  /** The time range the timeseries panels show (unix seconds). */
  readonly range: { readonly from: number; readonly to: number };
  /** One line under the title: how this was made. */
  readonly caption: string;
}

/** Grafana's grid: a row unit is 30 px, with 8 px between panels. */
const ROW = 30;
const GAP = 8;

/** The dashboard as one HTML page (inline CSS and SVG, nothing to fetch). */
export function renderPage(d: Dashboard, data: PanelData, o: PageOptions): string {
  const col = (o.width - 2 * GAP) / 24;
  const bottom = Math.max(...d.panels.map((p) => p.gridPos.y + p.gridPos.h));
  const panels = d.panels.map((p) => {
    const g = p.gridPos;
    const w = g.w * col - GAP;
    const hgt = g.h * ROW + (g.h - 1) * GAP - GAP;
    const body = p.type === 'stat' ? stat(p, data.get(p.id) ?? []) : timeseries(p, data.get(p.id) ?? [], w - 16, hgt - 36, o.range);
    const style = `left:${(GAP + g.x * col).toFixed(1)}px;top:${g.y * (ROW + GAP)}px;width:${w.toFixed(1)}px;height:${hgt}px`;
    return `<section class="panel ${esc(p.type)}" style="${style}"><h2>${esc(p.title)}</h2>${body}</section>`;
  });
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(d.title)}</title><style>
body{margin:0;background:#111217;color:#ccccdc;font:13px/1.3 "Liberation Sans",Arial,sans-serif;width:${o.width}px}
header{padding:10px ${GAP}px 8px}header h1{font-size:17px;font-weight:500;margin:0;color:#d8d9da}
header p{margin:3px 0 0;color:#8e8e9a;font-size:12px}
.grid-area{position:relative;height:${bottom * (ROW + GAP)}px}
.panel{position:absolute;box-sizing:border-box;background:#181b1f;border:1px solid #2c3235;border-radius:3px;padding:6px 8px;overflow:hidden}
.panel h2{font-size:13px;font-weight:500;margin:0 0 6px;color:#d8d9da}
.stat{font-size:38px;font-weight:500;color:#73BF69;text-align:center;margin-top:8px}
.nodata{color:#8e8e9a;text-align:center;margin-top:20%}
svg .grid{stroke:#2c3235;stroke-width:1}svg .tick{fill:#8e8e9a;font-size:11px}
.legend{font-size:11.5px;line-height:18px;max-height:54px;overflow:hidden}.item{margin-right:14px;white-space:nowrap}
.item i{display:inline-block;width:12px;height:3px;margin:0 5px 3px 0;vertical-align:middle}
</style></head><body><header><h1>${esc(d.title)}</h1><p>${esc(o.caption)}</p></header><div class="grid-area">${panels.join('')}</div></body></html>`;
}
