// The Access page: which phone may reach which paired device, and on which ports (nothing until allowed).
import { api, ApiError, type Device, type Grant, type Phone } from './api.js';
import { byId, h, icon, replaceKeepingFocus } from './dom.js';
import { refresh, state } from './store.js';
import { busy, clearError, errorBox, field, ICONS, showError, toast } from './ui.js';

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

export function renderAccessBody(): void {
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

export function renderAccess(m: HTMLElement): void {
  m.replaceChildren(h('h1', {}, 'Access'), h('p', { class: 'lead' }, 'Choose which phone may reach which paired device. Nothing is reachable until you allow it.'), h('div', { id: 'access-body' }));
  renderAccessBody();
}
