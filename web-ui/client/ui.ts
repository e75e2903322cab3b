// What every page of the household's page uses: messages (a toast, an error next to its form), form fields, busy
// buttons, the in-place confirmation, cards' facts and online badges, and the icons.
import { ApiError } from './api.js';
import { byId, h, type Child } from './dom.js';
import { confirmEnded, restart, state } from './store.js';

let toastTimer: number | undefined;

/** A short message in the polite live region (screen readers read it; it fades after a while). */
export function toast(text: string, kind: 'ok' | 'error' = 'ok'): void {
  const t = byId('toast');
  t.textContent = text;
  t.className = `toast show ${kind}`;
  window.clearTimeout(toastTimer);
  toastTimer = window.setTimeout(() => {
    t.className = 'toast';
  }, 6000);
}

/** Shows an API error next to the form that caused it, and moves focus to the field at fault. */
export function showError(where: HTMLElement, e: unknown, fieldIds: Record<string, string> = {}): void {
  if (e instanceof ApiError && e.status === 401 && e.code === 'unauthenticated') {
    void restart();
    return;
  }
  const msg = e instanceof ApiError ? e.message : 'something went wrong; try again';
  // A live update may have re-rendered the list while the request ran (a clean-clone CI run lost "give it a name"
  // into the replaced card's box): write where the page shows that box now.
  const box = where.isConnected || !where.id ? where : (document.getElementById(where.id) ?? where);
  box.textContent = msg.charAt(0).toUpperCase() + msg.slice(1) + '.';
  box.hidden = false;
  const id = e instanceof ApiError && e.field ? fieldIds[e.field] : undefined;
  const input = id ? document.getElementById(id) : null;
  if (input instanceof HTMLElement) {
    input.setAttribute('aria-invalid', 'true');
    input.focus();
  }
}

export function errorBox(id: string): HTMLElement {
  return h('p', { id, class: 'error', role: 'alert', hidden: true });
}

export function clearError(el: HTMLElement): void {
  el.textContent = '';
  el.hidden = true;
  el.closest('form')?.querySelectorAll('[aria-invalid]').forEach((x) => x.removeAttribute('aria-invalid'));
}

/** Disables a button while its request runs, with its label saying so. */
export async function busy<T>(button: HTMLButtonElement, label: string, fn: () => Promise<T>): Promise<T> {
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

export function field(id: string, label: string, input: HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement, hint?: string): HTMLElement {
  if (hint) input.setAttribute('aria-describedby', `${id}-hint`);
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('p', { id: `${id}-hint`, class: 'hint' }, hint) : null);
}

/** Icons (own simple shapes; no icon font, nothing fetched). What they show is also written out in words. */
export const ICONS = {
  lamp: 'M12 2a7 7 0 0 0-4 12.74V17h8v-2.26A7 7 0 0 0 12 2zM9 19h6v2H9z',
  camera: 'M3 7h4l2-2h6l2 2h4v12H3zm9 3a3.5 3.5 0 1 0 0 7 3.5 3.5 0 0 0 0-7z',
  printer: 'M7 3h10v5H7zM3 9h18v8h-4v4H7v-4H3zm6 6v4h6v-4z',
  screen: 'M3 4h18v13H3zm2 2v9h14V6zM8 19h8v2H8z',
  speaker: 'M6 2h12v20H6zm6 9a4 4 0 1 0 0 8 4 4 0 0 0 0-8zm0-6a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3z',
  plug: 'M8 2h2v5h4V2h2v5h2v5a6 6 0 0 1-5 5.9V22h-2v-4.1A6 6 0 0 1 6 12V7h2z',
  phone: 'M7 1h10a2 2 0 0 1 2 2v18a2 2 0 0 1-2 2H7a2 2 0 0 1-2-2V3a2 2 0 0 1 2-2zm0 3v14h10V4zm4 15.5h2v1.5h-2z',
  device: 'M12 2l9 5v10l-9 5-9-5V7zm0 5a5 5 0 1 0 0 10 5 5 0 0 0 0-10z',
} as const;

/** Replaces `actions` with a question and two buttons; live redraws wait until it is answered. */
export function confirmIn(actions: HTMLElement, question: string, yesLabel: string, back: HTMLButtonElement, onYes: (yes: HTMLButtonElement) => Promise<void>): void {
  const yes = h('button', { type: 'button', class: 'danger' }, yesLabel);
  const no = h('button', { type: 'button' }, 'Cancel');
  state.confirming = true;
  const done = confirmEnded;
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

export function onlineBadge(online: boolean): HTMLElement {
  return h('span', { class: `badge ${online ? 'on' : 'off'}` }, online ? '● Online' : '○ Offline');
}

export function details(rows: [string, Child][]): HTMLElement {
  return h('dl', { class: 'facts' }, ...rows.filter(([, v]) => v !== null && v !== '' && v !== undefined).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

