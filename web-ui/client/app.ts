// The household's page: first-start setup, sign-in, devices (discovered and paired), phones (add with a QR code),
// access (which phone reaches which device and port) and status, kept up to date by server-sent events.
// No framework: each page is a module (devices.ts, phones.ts, access.ts, status.ts, settings.ts, sign-in.ts) that
// renders from the state in store.ts with dom.ts and ui.ts; this shell starts the page, routes by the URL's #hash
// and follows the live stream. Every state is written in words, not only colour.
import { renderAccess, renderAccessBody } from './access.js';
import { api, ApiError, LIVE_URL, setCsrfToken, type AgentEvent, type Session, type Status, type Traffic } from './api.js';
import { renderDeviceLists, renderDevices } from './devices.js';
import { byId, h, trackDirty } from './dom.js';
import { noticeEnrolledPhone, renderPhoneList, renderPhones } from './phones.js';
import { renderSettings } from './settings.js';
import { renderSharing, renderSharingDevices, renderSharingLists } from './sharing.js';
import { renderLogin, renderSetup } from './sign-in.js';
import { renderEvents, renderStatus, renderStatusParts } from './status.js';
import { loadAll, page, refresh, setShell, state, type Changed, type Page } from './store.js';

const TITLES: Record<Page, string> = { devices: 'Devices', phones: 'Phones', access: 'Access', sharing: 'Sharing', status: 'Status', settings: 'Settings' };

const main = (): HTMLElement => byId('main');

async function start(): Promise<void> {
  stopLive();
  let s: Session;
  try {
    s = await api.session();
  } catch (e) {
    main().replaceChildren(h('h1', {}, 'Home network'), h('p', { class: 'error', role: 'alert' }, e instanceof ApiError ? e.message : 'The agent cannot be reached.'));
    return;
  }
  state.session = s;
  setCsrfToken(s.csrfToken);
  byId('nav').hidden = !s.authenticated;
  byId('signout').hidden = !s.authenticated;
  byId('household-name').textContent = s.household ?? 'Home network';
  if (s.setupRequired) renderSetup();
  else if (!s.authenticated) renderLogin();
  else {
    try {
      await loadAll();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        renderLogin();
        return;
      }
      const again = h('button', { type: 'button', class: 'primary' }, 'Try again');
      again.addEventListener('click', () => void start());
      main().replaceChildren(h('h1', {}, 'Home network'), h('p', { class: 'error', role: 'alert' }, e instanceof ApiError ? e.message : 'The agent did not answer.'), again);
      return;
    }
    startLive();
    render();
  }
}

function setLive(text: string, ok: boolean): void {
  const el = byId('live');
  el.textContent = text;
  el.className = ok ? 'live ok' : 'live off';
}

function startLive(): void {
  stopLive();
  const es = new EventSource(LIVE_URL);
  state.live = es;
  es.addEventListener('open', () => setLive('Live', true));
  es.addEventListener('error', () => {
    setLive('Reconnecting…', false);
    // A closed stream after an error is usually an ended session: ask, and show sign-in if so.
    if (es.readyState === EventSource.CLOSED) void start();
  });
  es.addEventListener('status', (ev) => {
    state.status = JSON.parse((ev as MessageEvent<string>).data) as Status;
    if (page() === 'status') renderStatusParts();
  });
  es.addEventListener('traffic', (ev) => {
    state.traffic = JSON.parse((ev as MessageEvent<string>).data) as Traffic;
    if (page() === 'status') renderStatusParts();
  });
  es.addEventListener('event', (ev) => {
    state.events = [JSON.parse((ev as MessageEvent<string>).data) as AgentEvent, ...state.events].slice(0, 30);
    if (page() === 'status') renderEvents();
  });
  es.addEventListener('changed', (ev) => {
    const c = JSON.parse((ev as MessageEvent<string>).data) as { devices: boolean; phones: boolean; grants: boolean };
    void refresh(c);
  });
}

function stopLive(): void {
  state.live?.close();
  state.live = null;
  setLive('', true);
}

/** Lists were read again: notice a phone that joined, then redraw, unless a question is open (then once it closes). */
function changed(c: Changed): void {
  noticeEnrolledPhone();
  if (state.confirming) {
    state.deferred = true;
    return;
  }
  redrawLists(c);
}

function redrawLists(c: Changed): void {
  const p = page();
  if (p === 'devices' && c.devices) renderDeviceLists();
  if (p === 'phones' && c.phones) renderPhoneList();
  if (p === 'access' && (c.devices || c.phones || c.grants)) renderAccessBody();
  if (p === 'sharing' && c.devices) renderSharingDevices();
  if (p === 'sharing' && (c.phones || c.grants)) void renderSharingLists();
}

// --- navigation ---------------------------------------------------------------------------------------------------

function render(): void {
  if (!state.session?.authenticated) return;
  const p = page();
  document.title = `${TITLES[p]} – ${state.session.household ?? 'Home network'}`;
  for (const a of byId('nav').querySelectorAll('a')) {
    if (a.getAttribute('href') === `#${p}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const m = main();
  switch (p) {
    case 'devices':
      renderDevices(m);
      break;
    case 'phones':
      renderPhones(m);
      break;
    case 'access':
      renderAccess(m);
      break;
    case 'sharing':
      renderSharing(m);
      break;
    case 'status':
      renderStatus(m);
      break;
    case 'settings':
      renderSettings(m);
      break;
  }
}

function init(): void {
  setShell({ start, changed, redraw: redrawLists });
  trackDirty(document);
  window.addEventListener('hashchange', () => {
    render();
    main().focus({ preventScroll: false });
  });
  byId('signout').addEventListener('click', () => {
    void api.logout().finally(() => {
      state.enrollment = null;
      void start();
    });
  });
  void start();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
else init();
