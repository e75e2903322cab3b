// The Phones page: adding a phone with a one-time code (QR code, link, token), noticing it join, removing phones.
import { api, type Phone } from './api.js';
import { byId, h, icon, replaceKeepingFocus, when } from './dom.js';
import { page, refresh, state } from './store.js';
import { busy, clearError, confirmIn, details, errorBox, field, ICONS, onlineBadge, showError, toast } from './ui.js';

/** The lists were read again: if the phone the code on screen was made for has joined, say so. */
export function noticeEnrolledPhone(): void {
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

export function renderPhoneList(): void {
  replaceKeepingFocus(byId('phone-list'), state.phones.length ? state.phones.map(phoneCard) : [h('li', { class: 'empty' }, 'No phone is added yet.')]);
}

export function renderPhones(m: HTMLElement): void {
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
