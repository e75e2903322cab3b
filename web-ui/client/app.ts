// The household's page: first-start setup, sign-in, devices (discovered and paired), phones (add with a QR code),
// access (which phone reaches which device and port) and status, kept up to date by server-sent events.
// No framework: each section renders from `state` with dom.ts; every state is written in words, not only colour.
import { api, ApiError, LIVE_URL, setCsrfToken, type AgentEvent, type Device, type Enrollment, type Grant, type Phone, type Session, type Status } from './api.js';
import { byId, bytes, duration, h, icon, replaceKeepingFocus, trackDirty, when, type Child } from './dom.js';

type Page = 'devices' | 'phones' | 'access' | 'status' | 'settings';
const PAGES: readonly Page[] = ['devices', 'phones', 'access', 'status', 'settings'];
const TITLES: Record<Page, string> = { devices: 'Devices', phones: 'Phones', access: 'Access', status: 'Status', settings: 'Settings' };

const state = {
  session: null as Session | null,
  devices: [] as Device[],
  phones: [] as Phone[],
  grants: [] as Grant[],
  status: null as Status | null,
  events: [] as AgentEvent[],
  /** The enrollment on screen, and the phones that existed when it was made (to notice the new one). */
  enrollment: null as { view: Enrollment; before: Set<string>; joined: Phone | null } | null,
  live: null as EventSource | null,
  /** A question ("Unpair …?") is open: live updates wait, so the buttons do not vanish under the person's finger. */
  confirming: false,
  /** Lists changed while a question was open: redraw them once it is answered. */
  deferred: false,
};

const main = (): HTMLElement => byId('main');

function page(): Page {
  const p = location.hash.replace(/^#/, '') as Page;
  return PAGES.includes(p) ? p : 'devices';
}

// --- messages -----------------------------------------------------------------------------------------------------

let toastTimer: number | undefined;

/** A short message in the polite live region (screen readers read it; it fades after a while). */
function toast(text: string, kind: 'ok' | 'error' = 'ok'): void {
  const t = byId('toast');
  t.textContent = text;
  t.className = `toast show ${kind}`;
  window.clearTimeout(toastTimer);
  toastTimer = window.setTimeout(() => {
    t.className = 'toast';
  }, 6000);
}

/** Shows an API error next to the form that caused it, and moves focus to the field at fault. */
function showError(where: HTMLElement, e: unknown, fieldIds: Record<string, string> = {}): void {
  if (e instanceof ApiError && e.status === 401 && e.code === 'unauthenticated') {
    void start();
    return;
  }
  const msg = e instanceof ApiError ? e.message : 'something went wrong; try again';
  where.textContent = msg.charAt(0).toUpperCase() + msg.slice(1) + '.';
  where.hidden = false;
  const id = e instanceof ApiError && e.field ? fieldIds[e.field] : undefined;
  const input = id ? document.getElementById(id) : null;
  if (input instanceof HTMLElement) {
    input.setAttribute('aria-invalid', 'true');
    input.focus();
  }
}

function errorBox(id: string): HTMLElement {
  return h('p', { id, class: 'error', role: 'alert', hidden: true });
}

function clearError(el: HTMLElement): void {
  el.textContent = '';
  el.hidden = true;
  el.closest('form')?.querySelectorAll('[aria-invalid]').forEach((x) => x.removeAttribute('aria-invalid'));
}

/** Disables a button while its request runs, with its label saying so. */
async function busy<T>(button: HTMLButtonElement, label: string, fn: () => Promise<T>): Promise<T> {
  const old = button.textContent;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  button.textContent = label;
  try {
    return await fn();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
    button.textContent = old;
  }
}

function field(id: string, label: string, input: HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement, hint?: string): HTMLElement {
  if (hint) input.setAttribute('aria-describedby', `${id}-hint`);
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('p', { id: `${id}-hint`, class: 'hint' }, hint) : null);
}

// --- start, setup, sign-in ----------------------------------------------------------------------------------------

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

function renderSetup(): void {
  document.title = 'Set up – Home network';
  const err = errorBox('setup-error');
  const code = h('input', { id: 'setup-code', name: 'setupCode', autocomplete: 'one-time-code', autocapitalize: 'characters', spellcheck: 'false', required: true });
  const household = h('input', { id: 'setup-household', name: 'household', value: 'Home', maxlength: 63, required: true });
  const pw = h('input', { id: 'setup-password', name: 'password', type: 'password', autocomplete: 'new-password', minlength: 8, required: true });
  const pw2 = h('input', { id: 'setup-password2', name: 'password2', type: 'password', autocomplete: 'new-password', minlength: 8, required: true });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Set password');
  const form = h(
    'form',
    { id: 'setup-form', class: 'panel narrow', novalidate: true },
    field('setup-code', 'Setup code', code, 'Printed on the letter from your internet provider, like K7QM-2XPA-9RWD.'),
    field('setup-household', 'Name of your home', household, 'Shown on phones you add.'),
    field('setup-password', 'New password', pw, 'At least 8 characters. You will use it to open this page.'),
    field('setup-password2', 'New password again', pw2),
    err,
    button,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearError(err);
    if (pw.value !== pw2.value) {
      showError(err, new ApiError(400, 'bad_request', 'the two passwords are not the same', 'password2'), { password2: 'setup-password2' });
      return;
    }
    void busy(button, 'Setting…', async () => {
      try {
        await api.setup(code.value, pw.value, household.value);
        toast('Your password is set.');
        await start();
      } catch (e) {
        showError(err, e, { setupCode: 'setup-code', password: 'setup-password', household: 'setup-household' });
      }
    });
  });
  main().replaceChildren(
    h('h1', {}, 'Welcome'),
    h('p', { class: 'lead' }, 'This page lets you reach the devices in your home from your phones, safely. First, choose the password that protects it.'),
    form,
  );
  code.focus();
}

function renderLogin(): void {
  document.title = 'Sign in – Home network';
  const err = errorBox('login-error');
  const pw = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { id: 'login-form', class: 'panel narrow' }, field('login-password', 'Password', pw), err, button);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearError(err);
    void busy(button, 'Signing in…', async () => {
      try {
        await api.login(pw.value);
        await start();
      } catch (e) {
        pw.value = '';
        showError(err, e, { password: 'login-password' });
      }
    });
  });
  main().replaceChildren(h('h1', {}, 'Sign in'), form);
  pw.focus();
}

// --- data and live updates ----------------------------------------------------------------------------------------

async function loadAll(): Promise<void> {
  const [devices, phones, grants, status, events] = await Promise.all([api.devices(), api.phones(), api.grants(), api.status(), api.events(30)]);
  Object.assign(state, { devices, phones, grants, status, events });
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

async function refresh(c: { devices?: boolean; phones?: boolean; grants?: boolean }): Promise<void> {
  try {
    const [devices, phones, grants] = await Promise.all([
      c.devices ? api.devices() : state.devices,
      c.phones ? api.phones() : state.phones,
      c.grants ? api.grants() : state.grants,
    ]);
    Object.assign(state, { devices, phones, grants });
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) void start();
    return;
  }
  noticeEnrolledPhone();
  if (state.confirming) {
    state.deferred = true;
    return;
  }
  redrawLists(c);
}

function redrawLists(c: { devices?: boolean; phones?: boolean; grants?: boolean }): void {
  const p = page();
  if (p === 'devices' && c.devices) renderDeviceLists();
  if (p === 'phones' && c.phones) renderPhoneList();
  if (p === 'access' && (c.devices || c.phones || c.grants)) renderAccessBody();
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
    case 'status':
      renderStatus(m);
      break;
    case 'settings':
      renderSettings(m);
      break;
  }
}

// --- devices ------------------------------------------------------------------------------------------------------

/** Icons by kind (own simple shapes; no icon font, nothing fetched). The kind is also written out in words. */
const ICONS = {
  lamp: 'M12 2a7 7 0 0 0-4 12.74V17h8v-2.26A7 7 0 0 0 12 2zM9 19h6v2H9z',
  camera: 'M3 7h4l2-2h6l2 2h4v12H3zm9 3a3.5 3.5 0 1 0 0 7 3.5 3.5 0 0 0 0-7z',
  printer: 'M7 3h10v5H7zM3 9h18v8h-4v4H7v-4H3zm6 6v4h6v-4z',
  screen: 'M3 4h18v13H3zm2 2v9h14V6zM8 19h8v2H8z',
  speaker: 'M6 2h12v20H6zm6 9a4 4 0 1 0 0 8 4 4 0 0 0 0-8zm0-6a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3z',
  plug: 'M8 2h2v5h4V2h2v5h2v5a6 6 0 0 1-5 5.9V22h-2v-4.1A6 6 0 0 1 6 12V7h2z',
  phone: 'M7 1h10a2 2 0 0 1 2 2v18a2 2 0 0 1-2 2H7a2 2 0 0 1-2-2V3a2 2 0 0 1 2-2zm0 3v14h10V4zm4 15.5h2v1.5h-2z',
  device: 'M12 2l9 5v10l-9 5-9-5V7zm0 5a5 5 0 1 0 0 10 5 5 0 0 0 0-10z',
} as const;

const KIND_ICON: Record<string, keyof typeof ICONS> = {
  lamp: 'lamp',
  camera: 'camera',
  doorbell: 'camera',
  printer: 'printer',
  tv: 'screen',
  'media player': 'screen',
  computer: 'screen',
  speaker: 'speaker',
  plug: 'plug',
  switch: 'plug',
};

const KINDS = ['lamp', 'camera', 'printer', 'tv', 'speaker', 'plug', 'thermostat', 'sensor', 'lock', 'computer', 'storage'];

/** Replaces `actions` with a question and two buttons; live redraws wait until it is answered. */
function confirmIn(actions: HTMLElement, question: string, yesLabel: string, back: HTMLButtonElement, onYes: (yes: HTMLButtonElement) => Promise<void>): void {
  const yes = h('button', { type: 'button', class: 'danger' }, yesLabel);
  const no = h('button', { type: 'button' }, 'Cancel');
  state.confirming = true;
  const done = (): void => {
    state.confirming = false;
    if (state.deferred) {
      state.deferred = false;
      redrawLists({ devices: true, phones: true, grants: true });
    }
  };
  actions.replaceChildren(h('p', {}, question), yes, no);
  no.addEventListener('click', () => {
    actions.replaceChildren(back);
    back.focus();
    done();
  });
  yes.addEventListener('click', () => {
    void onYes(yes).finally(done);
  });
  yes.focus();
}

function onlineBadge(online: boolean): HTMLElement {
  return h('span', { class: `badge ${online ? 'on' : 'off'}` }, online ? '● Online' : '○ Offline');
}

function details(rows: [string, Child][]): HTMLElement {
  return h('dl', { class: 'facts' }, ...rows.filter(([, v]) => v !== null && v !== '' && v !== undefined).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

/** The name a phone types (http://living-room-lamp.ntm/), then the virtual addresses behind it. */
function reachedAt(d: Device): HTMLElement {
  const addrs = [d.virtualV4, d.virtualV6].filter(Boolean).join(', ');
  return h('span', { class: 'reach' }, d.ntmName ? h('code', { class: 'ntm-name' }, d.ntmName) : null, d.ntmName && addrs ? ' — ' : '', addrs);
}

function deviceCard(d: Device): HTMLElement {
  const err = errorBox(`device-${d.id}-error`);
  const title = h('h3', { id: `device-${d.id}-title`, tabindex: -1 }, d.name || 'Unnamed device');
  const actions = h('div', { class: 'actions' });
  if (d.paired) {
    const unpair = h('button', { type: 'button', class: 'danger', 'aria-describedby': title.id }, 'Unpair');
    unpair.addEventListener('click', () => {
      confirmIn(actions, `Unpair ${d.name}? Phones will no longer reach it.`, `Yes, unpair ${d.name}`, unpair, (yes) =>
        busy(yes, 'Unpairing…', async () => {
          try {
            await api.unpair(d.id);
            state.confirming = false;
            toast(`${d.name} is no longer paired.`);
            await refresh({ devices: true, grants: true });
            document.getElementById(`device-${d.id}-title`)?.focus();
          } catch (e) {
            showError(err, e);
          }
        }),
      );
    });
    actions.append(unpair);
  } else {
    const nameInput = d.name ? null : h('input', { id: `device-${d.id}-name`, maxlength: 63, required: true, autocomplete: 'off' });
    const pair = h('button', { type: 'button', class: 'primary', id: `device-${d.id}-pair` }, d.name ? `Pair ${d.name}` : 'Pair');
    pair.addEventListener('click', () => {
      clearError(err);
      void busy(pair, 'Pairing…', async () => {
        try {
          const v = await api.pair(d.id, nameInput ? { name: nameInput.value } : {});
          toast(`${v.name} is paired. Choose which phones may reach it under Access.`);
          await refresh({ devices: true });
          document.getElementById(`device-${v.id}-title`)?.focus();
        } catch (e) {
          showError(err, e, nameInput ? { name: nameInput.id } : {});
        }
      });
    });
    if (nameInput) actions.append(field(nameInput.id, 'Name this device', nameInput));
    actions.append(pair);
  }
  return h(
    'li',
    { class: `card ${d.paired ? 'paired' : ''}`, 'data-device-id': d.id, 'aria-labelledby': title.id },
    h('div', { class: 'card-head' }, icon(ICONS[KIND_ICON[d.kind] ?? 'device']), title, onlineBadge(d.online)),
    details([
      ['Kind', d.kind || 'unknown'],
      ['Address', [d.ipv4, d.ipv6].filter(Boolean).join(', ') || null],
      ['MAC', d.mac],
      ['Found by', d.sources.map((s) => ({ mdns: 'announcement (mDNS)', neighbour: 'network traffic', manual: 'you' })[s] ?? s).join(', ')],
      ['Last seen', d.online ? null : when(d.lastSeen)],
      ['Phones reach it at', d.paired ? reachedAt(d) : null],
    ]),
    actions,
    err,
  );
}

function renderDeviceLists(): void {
  const paired = state.devices.filter((d) => d.paired);
  const found = state.devices.filter((d) => !d.paired);
  replaceKeepingFocus(byId('paired-list'), paired.length ? paired.map(deviceCard) : [h('li', { class: 'empty' }, 'No device is paired yet. Pair one from the list below.')]);
  replaceKeepingFocus(byId('found-list'), found.length ? found.map(deviceCard) : [h('li', { class: 'empty' }, 'Looking for devices… They appear here by themselves.')]);
  byId('paired-count').textContent = `(${paired.length})`;
  byId('found-count').textContent = `(${found.length})`;
}

function renderDevices(m: HTMLElement): void {
  const err = errorBox('manual-error');
  const name = h('input', { id: 'manual-name', maxlength: 63, required: true });
  const kind = h('input', { id: 'manual-kind', maxlength: 32, list: 'kinds' });
  const mac = h('input', { id: 'manual-mac', maxlength: 17, autocomplete: 'off', spellcheck: 'false' });
  const ipv4 = h('input', { id: 'manual-ipv4', maxlength: 15, inputmode: 'decimal', autocomplete: 'off' });
  const ipv6 = h('input', { id: 'manual-ipv6', maxlength: 45, autocomplete: 'off', spellcheck: 'false' });
  const add = h('button', { type: 'submit', class: 'primary' }, 'Add and pair');
  const form = h(
    'form',
    { id: 'manual-form', novalidate: true },
    field('manual-name', 'Name', name),
    field('manual-kind', 'Kind (optional)', kind),
    h('datalist', { id: 'kinds' }, ...KINDS.map((k) => h('option', { value: k }))),
    field('manual-mac', 'MAC address', mac, 'Like 02:00:00:aa:bb:cc. Give the MAC or an address, or both.'),
    field('manual-ipv4', 'IPv4 address', ipv4),
    field('manual-ipv6', 'IPv6 address', ipv6),
    err,
    add,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearError(err);
    const opt = (s: string): string | undefined => (s.trim() === '' ? undefined : s.trim());
    void busy(add, 'Pairing…', async () => {
      try {
        const v = await api.addDevice({ name: name.value, kind: opt(kind.value), mac: opt(mac.value), ipv4: opt(ipv4.value), ipv6: opt(ipv6.value) });
        toast(`${v.name} is paired.`);
        form.reset();
        await refresh({ devices: true });
      } catch (e) {
        showError(err, e, { name: 'manual-name', kind: 'manual-kind', mac: 'manual-mac', ipv4: 'manual-ipv4', ipv6: 'manual-ipv6' });
      }
    });
  });
  m.replaceChildren(
    h('h1', {}, 'Devices'),
    h('p', { class: 'lead' }, 'Pair a device to reach it from your phones. Devices on your home network appear here by themselves.'),
    h('section', { 'aria-labelledby': 'paired-h' }, h('h2', { id: 'paired-h' }, 'Paired ', h('span', { id: 'paired-count', class: 'count' })), h('ul', { id: 'paired-list', class: 'cards' })),
    h('section', { 'aria-labelledby': 'found-h' }, h('h2', { id: 'found-h' }, 'Found on your network ', h('span', { id: 'found-count', class: 'count' })), h('ul', { id: 'found-list', class: 'cards' })),
    h('details', { class: 'panel' }, h('summary', {}, 'Add a device by hand'), form),
  );
  renderDeviceLists();
}

// --- phones -------------------------------------------------------------------------------------------------------

function noticeEnrolledPhone(): void {
  const e = state.enrollment;
  if (!e || e.joined) return;
  const fresh = state.phones.filter((p) => !e.before.has(p.id));
  // Another pending code may be used at the same time: prefer the phone with this code's name.
  const joined = fresh.find((p) => p.name === e.view.name || p.name.startsWith(`${e.view.name} (`)) ?? fresh[0];
  if (!joined) return;
  e.joined = joined;
  toast(`${joined.name} was added.`);
  if (page() === 'phones') renderEnrollment();
}

function renderEnrollment(): void {
  const box = byId('enrollment');
  const e = state.enrollment;
  if (!e) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  box.hidden = false;
  if (e.joined) {
    box.replaceChildren(
      h('p', { class: 'success', role: 'status', id: 'enroll-done' }, `✓ ${e.joined.name} was added. Choose what it may reach under Access.`),
      h('a', { href: '#access', class: 'button' }, 'Go to Access'),
    );
    return;
  }
  const copy = (id: string, what: string) => {
    const b = h('button', { type: 'button' }, `Copy ${what}`);
    b.addEventListener('click', () => {
      const el = byId<HTMLInputElement | HTMLTextAreaElement>(id);
      el.select();
      void navigator.clipboard?.writeText(el.value).then(
        () => toast(`The ${what} is copied.`),
        () => toast(`Select the ${what} and copy it.`),
      );
    });
    return b;
  };
  const until = new Date(e.view.expiresAt).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  box.replaceChildren(
    h('h3', {}, `Add “${e.view.name}”`),
    h(
      'ol',
      { class: 'steps' },
      h('li', {}, 'On the phone, scan this code with the NTMobile app, or open the link there.'),
      h('li', {}, 'Or, on a phone or computer with the ntm command, run ', h('code', {}, 'ntm enroll'), ' followed by the token.'),
      h('li', {}, `The code works once, until ${until}. Keep it to yourself: whoever uses it joins your home.`),
    ),
    h('img', { id: 'enroll-qr', class: 'qr', src: `data:image/svg+xml;base64,${btoa(e.view.qrSvg)}`, alt: `QR code to add ${e.view.name}. The same link is below.`, width: 240, height: 240 }),
    h('div', { class: 'field' }, h('label', { for: 'enroll-link' }, 'Link'), h('div', { class: 'copy' }, h('input', { id: 'enroll-link', readonly: true, value: e.view.link }), copy('enroll-link', 'link'))),
    h('div', { class: 'field' }, h('label', { for: 'enroll-token' }, 'Token'), h('div', { class: 'copy' }, h('textarea', { id: 'enroll-token', readonly: true, rows: 3 }, e.view.token), copy('enroll-token', 'token'))),
    h('p', { id: 'enroll-wait', role: 'status', class: 'waiting' }, 'Waiting for the phone… This page updates by itself.'),
  );
}

function phoneCard(p: Phone): HTMLElement {
  const err = errorBox(`phone-${p.id}-error`);
  const title = h('h3', { id: `phone-${p.id}-title`, tabindex: -1 }, p.name);
  const actions = h('div', { class: 'actions' });
  const remove = h('button', { type: 'button', class: 'danger', 'aria-describedby': title.id }, 'Remove');
  remove.addEventListener('click', () => {
    confirmIn(actions, `Remove ${p.name}? It will no longer reach anything at home.`, `Yes, remove ${p.name}`, remove, (yes) =>
      busy(yes, 'Removing…', async () => {
        try {
          await api.removePhone(p.id);
          state.confirming = false;
          toast(`${p.name} was removed.`);
          await refresh({ phones: true, grants: true });
          byId('phone-list-h').focus();
        } catch (e) {
          showError(err, e);
        }
      }),
    );
  });
  actions.append(remove);
  return h(
    'li',
    { class: 'card', 'data-phone-id': p.id, 'aria-labelledby': title.id },
    h('div', { class: 'card-head' }, icon(ICONS.phone), title, onlineBadge(p.online)),
    details([
      ['Added', when(p.enrolledAt)],
      ['Address', p.virtualV4],
      ['ID', h('code', { class: 'id' }, p.id)],
    ]),
    actions,
    err,
  );
}

function renderPhoneList(): void {
  replaceKeepingFocus(byId('phone-list'), state.phones.length ? state.phones.map(phoneCard) : [h('li', { class: 'empty' }, 'No phone is added yet.')]);
}

function renderPhones(m: HTMLElement): void {
  const err = errorBox('enroll-error');
  const name = h('input', { id: 'phone-name', maxlength: 63, required: true, placeholder: 'e.g. Anna’s phone', autocomplete: 'off' });
  const make = h('button', { type: 'submit', class: 'primary' }, 'Create code');
  const form = h('form', { id: 'enroll-form', class: 'inline', novalidate: true }, field('phone-name', 'Name of the phone', name), make);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearError(err);
    void busy(make, 'Creating…', async () => {
      try {
        const view = await api.createEnrollment(name.value);
        state.enrollment = { view, before: new Set(state.phones.map((p) => p.id)), joined: null };
        form.reset();
        renderEnrollment();
        byId('enroll-link').focus();
      } catch (e) {
        showError(err, e, { name: 'phone-name' });
      }
    });
  });
  m.replaceChildren(
    h('h1', {}, 'Phones'),
    h('section', { class: 'panel', 'aria-labelledby': 'add-phone-h' }, h('h2', { id: 'add-phone-h' }, 'Add a phone'), form, err, h('div', { id: 'enrollment', hidden: true })),
    h('section', { 'aria-labelledby': 'phone-list-h' }, h('h2', { id: 'phone-list-h', tabindex: -1 }, 'Added phones'), h('ul', { id: 'phone-list', class: 'cards' })),
  );
  renderEnrollment();
  renderPhoneList();
}

// --- access -------------------------------------------------------------------------------------------------------

function parsePorts(text: string): number[] | string {
  const t = text.trim();
  if (t === '' || /^all( ports)?$/i.test(t)) return [];
  const out: number[] = [];
  for (const part of t.split(/[\s,]+/).filter(Boolean)) {
    const n = Number(part);
    if (!Number.isInteger(n) || n < 1 || n > 65535) return `“${part}” is not a port number (1–65535)`;
    out.push(n);
  }
  return out;
}

function grantRow(p: Phone, d: Device, g: Grant | undefined): HTMLElement {
  const key = `${p.id}-${d.id}`;
  const err = errorBox(`grant-${key}-error`);
  const allowed = h('input', { type: 'checkbox', id: `grant-${key}-allowed`, checked: g !== undefined });
  const ports = h('input', { id: `grant-${key}-ports`, value: g ? g.ports.join(', ') : '', placeholder: 'all ports', inputmode: 'numeric', autocomplete: 'off' });
  const save = h('button', { type: 'button', id: `grant-${key}-save` }, 'Save');
  ports.addEventListener('input', () => clearError(err));
  const stateText = g ? (g.ports.length ? `Allowed: port${g.ports.length > 1 ? 's' : ''} ${g.ports.join(', ')}` : 'Allowed: all ports') : 'Not allowed';
  save.addEventListener('click', () => {
    clearError(err);
    const parsed = parsePorts(ports.value);
    if (typeof parsed === 'string') {
      showError(err, new ApiError(400, 'bad_request', parsed, 'ports'), { ports: ports.id });
      return;
    }
    void busy(save, 'Saving…', async () => {
      try {
        if (allowed.checked) await api.setGrant(p.id, d.id, parsed);
        else if (g) await api.revokeGrant(p.id, d.id);
        toast(allowed.checked ? `${p.name} may reach ${d.name}.` : `${p.name} may no longer reach ${d.name}.`);
        allowed.dataset['dirty'] = '';
        ports.dataset['dirty'] = '';
        await refresh({ grants: true });
      } catch (e) {
        showError(err, e, { ports: ports.id });
      }
    });
  });
  return h(
    'fieldset',
    { class: 'grant', 'data-grant': key },
    h('legend', {}, d.name),
    h('p', { class: `grant-state ${g ? 'on' : 'off'}`, id: `grant-${key}-state` }, g ? '✓ ' : '✗ ', stateText),
    h('div', { class: 'check' }, allowed, h('label', { for: allowed.id }, `${p.name} may reach ${d.name}`)),
    field(ports.id, 'Ports', ports, 'Empty for all ports, or a list like 80, 443.'),
    save,
    err,
  );
}

function renderAccessBody(): void {
  const paired = state.devices.filter((d) => d.paired);
  const body = byId('access-body');
  if (state.phones.length === 0 || paired.length === 0) {
    replaceKeepingFocus(body, [
      h('p', { class: 'empty' }, state.phones.length === 0 ? 'Add a phone first (under Phones).' : 'Pair a device first (under Devices).'),
    ]);
    return;
  }
  replaceKeepingFocus(
    body,
    state.phones.map((p) =>
      h(
        'section',
        { class: 'panel', 'aria-labelledby': `access-${p.id}-h` },
        h('h2', { id: `access-${p.id}-h`, class: 'with-icon' }, icon(ICONS.phone), p.name),
        h('div', { class: 'grants' }, ...paired.map((d) => grantRow(p, d, state.grants.find((g) => g.phoneId === p.id && g.deviceId === d.id)))),
      ),
    ),
  );
}

function renderAccess(m: HTMLElement): void {
  m.replaceChildren(h('h1', {}, 'Access'), h('p', { class: 'lead' }, 'Choose which phone may reach which paired device. Nothing is reachable until you allow it.'), h('div', { id: 'access-body' }));
  renderAccessBody();
}

// --- status -------------------------------------------------------------------------------------------------------

const PATH_TEXT: Record<string, string> = { direct: 'Direct', 'hole-punched': 'Direct (through NAT)', relayed: 'Relayed' };

function healthItem(name: string, ok: boolean, detail: string): HTMLElement {
  return h('li', { class: `health-item ${ok ? 'ok' : 'bad'}` }, h('strong', {}, name), h('span', { class: 'state' }, ok ? '✓ OK' : '✗ Problem'), h('span', { class: 'detail' }, detail));
}

function renderStatusParts(): void {
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
    tl.replaceChildren(h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'No phone is connected right now.')));
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
      ),
    ),
  );
}

/**
 * A tunnel's end measures the round trip on the handshake it starts; the answering end (usually the agent: a phone
 * behind a NAT starts its tunnels) has none to show, and 0 must not read as "instant".
 */
function roundTrip(ms: number): string {
  if (!(ms > 0)) return 'not measured';
  return ms < 1 ? 'under 1 ms' : `${Math.round(ms)} ms`;
}

function renderEvents(): void {
  const el = document.getElementById('event-list');
  if (!el) return;
  el.replaceChildren(
    ...(state.events.length
      ? state.events.map((e) => h('li', {}, h('time', { datetime: e.at }, when(e.at)), ' ', h('span', {}, e.message)))
      : [h('li', { class: 'empty' }, 'Nothing has happened yet.')]),
  );
}

function renderStatus(m: HTMLElement): void {
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
        h('thead', {}, h('tr', {}, ...['Device', 'Phone', 'Path', 'State', 'Round trip', 'Sent', 'Received'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', { id: 'tunnel-body', 'aria-live': 'off' }),
      ),
    ),
    h('section', { 'aria-labelledby': 'events-h' }, h('h2', { id: 'events-h' }, 'Recent events'), h('ol', { id: 'event-list', class: 'events' })),
  );
  renderStatusParts();
  renderEvents();
}

// --- settings -----------------------------------------------------------------------------------------------------

function renderSettings(m: HTMLElement): void {
  const nameErr = errorBox('household-error');
  const name = h('input', { id: 'household-input', maxlength: 63, required: true, value: state.session?.household ?? '' });
  const saveName = h('button', { type: 'submit' }, 'Save name');
  const nameForm = h('form', { id: 'household-form', class: 'panel', novalidate: true }, h('h2', {}, 'Name of your home'), field('household-input', 'Name', name, 'Shown on phones you add.'), nameErr, saveName);
  nameForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearError(nameErr);
    void busy(saveName, 'Saving…', async () => {
      try {
        const r = await api.setHousehold(name.value);
        if (state.session) state.session.household = r.name;
        byId('household-name').textContent = r.name;
        toast('The name is saved.');
      } catch (e) {
        showError(nameErr, e, { name: 'household-input' });
      }
    });
  });
  const pwErr = errorBox('password-error');
  const cur = h('input', { id: 'current-password', type: 'password', autocomplete: 'current-password', required: true });
  const next = h('input', { id: 'new-password', type: 'password', autocomplete: 'new-password', minlength: 8, required: true });
  const savePw = h('button', { type: 'submit' }, 'Change password');
  const pwForm = h(
    'form',
    { id: 'password-form', class: 'panel', novalidate: true },
    h('h2', {}, 'Password'),
    field('current-password', 'Current password', cur),
    field('new-password', 'New password', next, 'At least 8 characters. Other signed-in browsers are signed out.'),
    pwErr,
    savePw,
  );
  pwForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearError(pwErr);
    void busy(savePw, 'Changing…', async () => {
      try {
        await api.changePassword(cur.value, next.value);
        pwForm.reset();
        toast('The password is changed.');
      } catch (e) {
        showError(pwErr, e, { currentPassword: 'current-password', newPassword: 'new-password' });
      }
    });
  });
  m.replaceChildren(h('h1', {}, 'Settings'), nameForm, pwForm);
}

// --- wiring -------------------------------------------------------------------------------------------------------

function init(): void {
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
