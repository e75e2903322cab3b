// The dashboard screenshot's renderer (scripts/dashboard/render.ts): the dashboard's variables put into its PromQL as
// Grafana would, legends and units as Grafana writes them, and every panel of docs/grafana-dashboard.json drawn from
// canned Prometheus answers (the real run is scripts/dashboard-shot).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { expand, formatValue, legend, rateInterval, renderPage, type Dashboard, type PromSeries } from '../../scripts/dashboard/render.js';

const ROOT = resolve(import.meta.dirname, '..', '..', '..');

test("Grafana's $__rate_interval and the job variable go into the panels' PromQL", () => {
  assert.equal(rateInterval(5, 5), 20);
  assert.equal(rateInterval(15, 60), 75);
  assert.equal(
    expand('sum by (instance) (rate(ntm_dc_directions_total{job=~"$job"}[$__rate_interval]))', { job: '.*', rateIntervalS: 20 }),
    'sum by (instance) (rate(ntm_dc_directions_total{job=~".*"}[20s]))',
  );
});

test('legends and units as Grafana writes them', () => {
  assert.equal(legend('{{instance}} {{kind}}', { instance: 'dc-1:9100', kind: 'first' }), 'dc-1:9100 first');
  assert.equal(legend(undefined, { __name__: 'up', job: 'rs' }), 'up{job="rs"}');
  assert.equal(formatValue(3, 'short'), '3');
  assert.equal(formatValue(1500, 'short'), '1.5 k');
  assert.equal(formatValue(98 * 1024 * 1024, 'bytes'), '98 MiB');
  assert.equal(formatValue(2_400_000, 'bps'), '2.4 Mb/s');
  assert.equal(formatValue(0.25, 'reqps'), '0.25 req/s');
  assert.equal(formatValue(12, 'pps'), '12 p/s');
});

test('every panel of docs/grafana-dashboard.json is drawn: values, lines with legends, "No data" where none', () => {
  const d = JSON.parse(readFileSync(join(ROOT, 'docs/grafana-dashboard.json'), 'utf8')) as Dashboard;
  const data = new Map<number, PromSeries[][]>();
  for (const p of d.panels) {
    data.set(
      p.id,
      (p.targets ?? []).map((t, i) =>
        p.title.startsWith('Drops')
          ? []
          : p.type === 'stat'
            ? [{ metric: {}, value: [1000, '3'] as const }]
            : [{ metric: { instance: `i${i}`, kind: 'first', path: 'relayed', reason: 'x' }, values: [[1000, '1'], [1005, '2'], [1010, '4']] as const }],
      ),
    );
  }
  const html = renderPage(d, data, { width: 1200, range: { from: 1000, to: 1010 }, caption: 'canned' });
  for (const p of d.panels) assert.ok(html.includes(`<h2>${p.title.replace(/&/g, '&amp;')}</h2>`), p.title);
  assert.equal(html.match(/class="stat">3( B)?</g)?.length, d.panels.filter((p) => p.type === 'stat').length);
  assert.match(html, /No data/, 'the drops panel, given no series');
  assert.ok(html.includes('i0 first'), 'a legend from legendFormat');
  assert.equal(html.match(/<path d="M/g)?.length, d.panels.filter((p) => p.type === 'timeseries' && !p.title.startsWith('Drops')).reduce((n, p) => n + (p.targets?.length ?? 0), 0));
});
