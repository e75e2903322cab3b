// The Status page: health of the agent, its DC and RS and the data path, the live tunnels, and recent events.
import { byId, bytes, duration, h, when } from './dom.js';
import { sparkline } from './sparkline.js';
import { state } from './store.js';

const PATH_TEXT: Record<string, string> = { direct: 'Direct', 'hole-punched': 'Direct (through NAT)', relayed: 'Relayed' };

function healthItem(name: string, ok: boolean, detail: string): HTMLElement {
  return h('li', { class: `health-item ${ok ? 'ok' : 'bad'}` }, h('strong', {}, name), h('span', { class: 'state' }, ok ? '✓ OK' : '✗ Problem'), h('span', { class: 'detail' }, detail));
}

export function renderStatusParts(): void {
  const s = state.status;
  const hl = document.getElementById('health-list');
  const tl = document.getElementById('tunnel-body');
  if (!s || !hl || !tl) return;
  const drops = Object.values(s.health.dataplane.drops).reduce((a, b) => a + b, 0);
  hl.replaceChildren(
    healthItem('Agent', s.health.agent.ok, `version ${s.health.agent.version}, running for ${duration(s.health.agent.uptimeS)}`),
    healthItem('Direction Coordinator', s.health.dc.ok, `${s.health.dc.terminals} registered, ${s.health.dc.online} online`),
    healthItem('Relay Server', s.health.rs.ok, `${s.health.rs.tunnels} relayed connection${s.health.rs.tunnels === 1 ? '' : 's'}`),
    healthItem('Data path', s.health.dataplane.ok, `${drops} packet${drops === 1 ? '' : 's'} dropped`),
  );
  byId('tunnel-count').textContent = `(${s.tunnels.length})`;
  if (s.tunnels.length === 0) {
    tl.replaceChildren(h('tr', {}, h('td', { colspan: COLUMNS.length, class: 'empty' }, 'No phone is connected right now.')));
    return;
  }
  tl.replaceChildren(
    ...s.tunnels.map((t) =>
      h(
        'tr',
        {},
        h('td', { 'data-label': 'Device' }, t.device),
        h('td', { 'data-label': 'Phone' }, t.peerName || t.peer),
        h('td', { 'data-label': 'Path' }, PATH_TEXT[t.path] ?? t.path),
        h('td', { 'data-label': 'State' }, t.state),
        h('td', { 'data-label': 'Round trip' }, roundTrip(t.rttMs)),
        h('td', { 'data-label': 'Sent' }, bytes(t.txBytes)),
        h('td', { 'data-label': 'Received' }, bytes(t.rxBytes)),
        h('td', { 'data-label': 'Traffic', class: 'chart' }, chart(t.device, t.peer)),
      ),
    ),
  );
}

/** The connection's traffic chart (the agent's history), or words while it has none yet. */
function chart(device: string, peer: string): HTMLElement | string {
  const tr = state.traffic;
  const c = tr?.connections.find((x) => x.device === device && x.peer === peer);
  if (!tr || !c) return 'Measuring…';
  return sparkline({ stepS: tr.stepS, txBytes: c.txBytes, rxBytes: c.rxBytes }, Math.round((tr.stepS * tr.points) / 60));
}

const COLUMNS = ['Device', 'Phone', 'Path', 'State', 'Round trip', 'Sent', 'Received', 'Traffic'];

/**
 * A tunnel's end measures the round trip on the handshake it starts; the answering end (usually the agent: a phone
 * behind a NAT starts its tunnels) has none to show, and 0 must not read as "instant".
 */
function roundTrip(ms: number): string {
  if (!(ms > 0)) return 'not measured';
  return ms < 1 ? 'under 1 ms' : `${Math.round(ms)} ms`;
}

export function renderEvents(): void {
  const el = document.getElementById('event-list');
  if (!el) return;
  el.replaceChildren(
    ...(state.events.length
      ? state.events.map((e) => h('li', {}, h('time', { datetime: e.at }, when(e.at)), ' ', h('span', {}, e.message)))
      : [h('li', { class: 'empty' }, 'Nothing has happened yet.')]),
  );
}

export function renderStatus(m: HTMLElement): void {
  m.replaceChildren(
    h('h1', {}, 'Status'),
    h('section', { 'aria-labelledby': 'health-h' }, h('h2', { id: 'health-h' }, 'Health'), h('ul', { id: 'health-list', class: 'health' })),
    h(
      'section',
      { 'aria-labelledby': 'tunnels-h' },
      h('h2', { id: 'tunnels-h' }, 'Connections ', h('span', { id: 'tunnel-count', class: 'count' })),
      h(
        'table',
        { class: 'tunnels' },
        h('caption', { class: 'visually-hidden' }, 'Phones connected to devices now'),
        h('thead', {}, h('tr', {}, ...COLUMNS.map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', { id: 'tunnel-body', 'aria-live': 'off' }),
      ),
    ),
    h('section', { 'aria-labelledby': 'events-h' }, h('h2', { id: 'events-h' }, 'Recent events'), h('ol', { id: 'event-list', class: 'events' })),
  );
  renderStatusParts();
  renderEvents();
}
