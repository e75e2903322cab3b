// The Sharing page (issue 13; paper §3.2.2, last paragraph: two agents let two non-NTM devices talk): share a paired
// device with another home by an invitation code, see and end the shares; accept another home's code, choose which
// of this home's devices may use it, stop using it.
import { api, type Device, type RemoteShare, type Share, type ShareInvite } from './api.js';
import { byId, h, replaceKeepingFocus, when } from './dom.js';
import { page, state } from './store.js';
import { busy, clearError, confirmIn, details, errorBox, field, onlineBadge, showError, toast } from './ui.js';

/** The invitation on screen until the page is left (the code is shown once; only its hash is kept). */
let invite: ShareInvite | null = null;

function portsText(ports: readonly number[]): string {
  return ports.length === 0 ? 'all ports' : `port${ports.length > 1 ? 's' : ''} ${ports.join(', ')}`;
}

function parsePorts(text: string): number[] {
  return text
    .split(/[\s,]+/)
    .filter((p) => p !== '')
    .map(Number);
}

function deviceName(d: Device): string {
  return d.name || d.ipv4 || d.ipv6 || d.mac || `device ${d.id}`;
}

/** Checkboxes of this home's devices (`chosen` ticked): who may use a shared device. */
function deviceChoice(idPrefix: string, chosen: readonly number[]): HTMLElement {
  const boxes = state.devices.map((d) => {
    const id = `${idPrefix}-${d.id}`;
    const box = h('input', { type: 'checkbox', id, value: String(d.id), 'data-device-id': d.id });
    box.checked = chosen.includes(d.id);
    return h('li', {}, box, h('label', { for: id }, deviceName(d)));
  });
  return h('ul', { class: 'choices', id: `${idPrefix}-list` }, ...(boxes.length ? boxes : [h('li', { class: 'empty' }, 'No device of this home is known yet.')]));
}

function chosenIn(list: HTMLElement): number[] {
  return [...list.querySelectorAll<HTMLInputElement>('input[type=checkbox]')].filter((b) => b.checked).map((b) => Number(b.value));
}

function renderInvite(): void {
  const box = byId('share-invite');
  if (!invite) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  box.hidden = false;
  const until = new Date(invite.expiresAt).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
  const code = h('textarea', { id: 'share-code', readonly: true, rows: 4 }, invite.code);
  const copy = h('button', { type: 'button' }, 'Copy code');
  copy.addEventListener('click', () => {
    code.select();
    void navigator.clipboard?.writeText(code.value).then(
      () => toast('The code is copied.'),
      () => toast('Select the code and copy it.'),
    );
  });
  box.replaceChildren(
    h('h3', {}, `Invitation for “${invite.household}”`),
    h(
      'ol',
      { class: 'steps' },
      h('li', {}, 'Send this code to the other home (a message is fine).'),
      h('li', {}, 'Its owner pastes it on their home page, under Sharing → Use a device another home shared.'),
      h('li', {}, `It works once, until ${until}, for ${portsText(invite.ports)}. You can end the share here at any time.`),
    ),
    h('div', { class: 'field' }, h('label', { for: 'share-code' }, 'Invitation code'), h('div', { class: 'copy' }, code, copy)),
  );
}

function shareCard(s: Share): HTMLElement {
  const err = errorBox(`share-${s.peerId}-error`);
  const title = h('h3', { id: `share-${s.peerId}-title`, tabindex: -1 }, `${s.device} → ${s.household}`);
  const actions = h('div', { class: 'actions' });
  const end = h('button', { type: 'button', class: 'danger', 'aria-describedby': title.id }, 'Stop sharing');
  end.addEventListener('click', () => {
    confirmIn(actions, `Stop sharing ${s.device} with ${s.household}? Their devices lose it at once.`, 'Yes, stop sharing', end, (yes) =>
      busy(yes, 'Stopping…', async () => {
        try {
          await api.revokeShare(s.peerId);
          state.confirming = false;
          toast(`${s.device} is no longer shared with ${s.household}.`);
          await renderSharingLists();
        } catch (e) {
          showError(err, e);
        }
      }),
    );
  });
  actions.append(end);
  return h(
    'li',
    { class: 'card', 'data-share-peer': s.peerId, 'aria-labelledby': title.id },
    h('div', { class: 'card-head' }, title, onlineBadge(s.online)),
    details([
      ['Device', s.device],
      ['Home', s.household],
      ['Ports', portsText(s.ports)],
      ['Since', when(s.since)],
    ]),
    actions,
    err,
  );
}

function remoteCard(r: RemoteShare): HTMLElement {
  const err = errorBox(`remote-${r.id}-error`);
  const title = h('h3', { id: `remote-${r.id}-title`, tabindex: -1 }, `${r.device} of ${r.household}`);
  const choice = deviceChoice(`remote-${r.id}-user`, r.users);
  const save = h('button', { type: 'button' }, 'Save who may use it');
  save.addEventListener('click', () => {
    clearError(err);
    void busy(save, 'Saving…', async () => {
      try {
        await api.setRemoteShareUsers(r.id, chosenIn(choice));
        toast(`Saved who may use ${r.device}.`);
        await renderSharingLists();
      } catch (e) {
        showError(err, e);
      }
    });
  });
  const actions = h('div', { class: 'actions' });
  const leave = h('button', { type: 'button', class: 'danger', 'aria-describedby': title.id }, 'Stop using');
  leave.addEventListener('click', () => {
    confirmIn(actions, `Stop using ${r.device} of ${r.household}? To use it again you need a new invitation.`, 'Yes, stop using it', leave, (yes) =>
      busy(yes, 'Stopping…', async () => {
        try {
          await api.removeRemoteShare(r.id);
          state.confirming = false;
          toast(`${r.device} of ${r.household} is no longer used.`);
          await renderSharingLists();
        } catch (e) {
          showError(err, e);
        }
      }),
    );
  });
  actions.append(save, leave);
  return h(
    'li',
    { class: 'card', 'data-remote-share': r.id, 'aria-labelledby': title.id },
    h('div', { class: 'card-head' }, title, onlineBadge(r.online)),
    details([
      ['Name on this home’s network', h('code', {}, r.name)],
      ['Address', r.virtualV4],
      ['Accepted', when(r.acceptedAt)],
    ]),
    h('fieldset', {}, h('legend', {}, 'Devices of this home that may use it'), choice),
    actions,
    err,
  );
}

/** Reads both lists again and redraws them (after a change here, or when the live stream says lists changed). */
export async function renderSharingLists(): Promise<void> {
  const [shares, remote] = await Promise.all([api.shares(), api.remoteShares()]).catch(() => [null, null] as const);
  if (page() !== 'sharing' || !shares || !remote) return;
  replaceKeepingFocus(byId('share-list'), shares.length ? shares.map(shareCard) : [h('li', { class: 'empty' }, 'No device is shared with another home.')]);
  replaceKeepingFocus(byId('remote-list'), remote.length ? remote.map(remoteCard) : [h('li', { class: 'empty' }, 'No other home shares a device with this one.')]);
}

function deviceOptions(paired: readonly Device[]): HTMLOptionElement[] {
  return paired.map((d) => h('option', { value: String(d.id) }, deviceName(d)));
}

/** This home's devices changed (discovered, paired): the forms' choices follow, keeping what is selected or ticked. */
export function renderSharingDevices(): void {
  if (page() !== 'sharing') return;
  const select = document.getElementById('share-device') as HTMLSelectElement | null;
  if (select) {
    const was = select.value;
    select.replaceChildren(...deviceOptions(state.devices.filter((d) => d.paired)));
    if ([...select.options].some((o) => o.value === was)) select.value = was;
  }
  const list = document.getElementById('accept-user-list');
  if (list) list.replaceWith(deviceChoice('accept-user', chosenIn(list)));
}

function shareForm(): HTMLElement {
  const err = errorBox('share-error');
  const paired = state.devices.filter((d) => d.paired);
  const device = h('select', { id: 'share-device', required: true }, ...deviceOptions(paired));
  const household = h('input', { id: 'share-household', maxlength: 63, required: true, placeholder: 'e.g. Suzuki home', autocomplete: 'off' });
  const ports = h('input', { id: 'share-ports', inputmode: 'numeric', placeholder: 'e.g. 80, 554 (empty: all)', autocomplete: 'off' });
  const make = h('button', { type: 'submit', class: 'primary' }, 'Create invitation');
  const form = h(
    'form',
    { id: 'share-form', novalidate: true },
    field('share-device', 'Device to share', device, paired.length ? undefined : 'Pair a device first (Devices).'),
    field('share-household', 'The other home', household),
    field('share-ports', 'Ports', ports, 'Only these ports of the device; leave empty to share all of them.'),
    make,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearError(err);
    void busy(make, 'Creating…', async () => {
      try {
        invite = await api.createShareInvite(Number(device.value), household.value, parsePorts(ports.value));
        form.reset();
        renderInvite();
        byId('share-code').focus();
      } catch (e) {
        showError(err, e, { household: 'share-household', ports: 'share-ports', deviceId: 'share-device' });
      }
    });
  });
  return h('div', {}, form, err);
}

function acceptForm(): HTMLElement {
  const err = errorBox('accept-error');
  const code = h('textarea', { id: 'accept-code', rows: 3, required: true, placeholder: 'ntm-share1:…', autocomplete: 'off' });
  const accept = h('button', { type: 'submit', class: 'primary' }, 'Accept');
  const form = h(
    'form',
    { id: 'accept-form', novalidate: true },
    field('accept-code', 'Invitation code from the other home', code),
    h('fieldset', {}, h('legend', {}, 'Devices of this home that may use it'), deviceChoice('accept-user', [])),
    accept,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearError(err);
    void busy(accept, 'Accepting…', async () => {
      try {
        const r = await api.acceptShare(code.value, chosenIn(byId('accept-user-list')));
        form.reset();
        toast(`${r.device} of ${r.household} is shared with this home: ${r.name}`);
        await renderSharingLists();
      } catch (e) {
        showError(err, e, { code: 'accept-code', users: 'accept-user-list' });
      }
    });
  });
  return h('div', {}, form, err);
}

export function renderSharing(m: HTMLElement): void {
  m.replaceChildren(
    h('h1', {}, 'Sharing'),
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'share-h' },
      h('h2', { id: 'share-h' }, 'Share a device with another home'),
      h('p', { class: 'hint' }, 'The other home’s devices reach it through both homes’ gateways, encrypted all the way; you choose the device and its ports.'),
      shareForm(),
      h('div', { id: 'share-invite', hidden: true }),
    ),
    h('section', { 'aria-labelledby': 'share-list-h' }, h('h2', { id: 'share-list-h', tabindex: -1 }, 'Shared with other homes'), h('ul', { id: 'share-list', class: 'cards' })),
    h('section', { class: 'panel', 'aria-labelledby': 'accept-h' }, h('h2', { id: 'accept-h' }, 'Use a device another home shared'), acceptForm()),
    h('section', { 'aria-labelledby': 'remote-list-h' }, h('h2', { id: 'remote-list-h', tabindex: -1 }, 'Shared with this home'), h('ul', { id: 'remote-list', class: 'cards' })),
  );
  renderInvite();
  void renderSharingLists();
  // The device lists may be older than this page (the live stream refreshes them on changes only).
  void api.devices().then(
    (d) => {
      state.devices = d;
      renderSharingDevices();
    },
    () => undefined,
  );
}
