// The Devices page: paired devices and those found on the LAN (discovered by the agent), pairing and unpairing, and
// a device described by hand.
import { api, type Device } from './api.js';
import { byId, h, icon, replaceKeepingFocus, when } from './dom.js';
import { refresh, state } from './store.js';
import { busy, clearError, confirmIn, details, errorBox, field, ICONS, onlineBadge, showError, toast } from './ui.js';

/** The icon of each kind; the kind is also written out in words. */
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

/** The name a phone types (http://living-room-lamp.ntm/), then the virtual addresses behind it. */
function reachedAt(d: Device): HTMLElement {
  const addrs = [d.virtualV4, d.virtualV6].filter(Boolean).join(', ');
  return h('span', { class: 'reach' }, d.ntmName ? h('code', { class: 'ntm-name' }, d.ntmName) : null, d.ntmName && addrs ? ' — ' : '', addrs);
}

/** "This device first" (paper §3.2.1): the device's traffic gets the priority class on the household's link. */
function firstSwitch(d: Device, err: HTMLElement): HTMLElement {
  const rule = state.qos?.devices.find((r) => r.deviceId === d.id);
  const id = `device-${d.id}-first`;
  const box = h('input', { type: 'checkbox', id, ...(rule?.class === 'priority' ? { checked: true } : {}) });
  box.addEventListener('change', () => {
    clearError(err);
    box.disabled = true;
    const want = box.checked;
    (want ? api.setDeviceQos(d.id, { class: 'priority', uplinkKbit: rule?.uplinkKbit ?? null, downlinkKbit: rule?.downlinkKbit ?? null }) : api.clearDeviceQos(d.id))
      .then((qos) => {
        state.qos = qos;
        toast(want ? `${d.name} now goes first when the connection is busy.` : `${d.name} shares the connection like the others.`);
      })
      .catch((e: unknown) => {
        box.checked = !want;
        showError(err, e);
      })
      .finally(() => (box.disabled = false));
  });
  const shaped = (state.qos?.link.uplinkKbit ?? 0) > 0 || (state.qos?.link.downlinkKbit ?? 0) > 0;
  return h('label', { class: 'first', for: id }, box, ' This device first', shaped ? null : h('small', {}, ' (once your provider has set your line speed)'));
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
    actions.append(firstSwitch(d, err), unpair);
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

export function renderDeviceLists(): void {
  const paired = state.devices.filter((d) => d.paired);
  const found = state.devices.filter((d) => !d.paired);
  replaceKeepingFocus(byId('paired-list'), paired.length ? paired.map(deviceCard) : [h('li', { class: 'empty' }, 'No device is paired yet. Pair one from the list below.')]);
  replaceKeepingFocus(byId('found-list'), found.length ? found.map(deviceCard) : [h('li', { class: 'empty' }, 'Looking for devices… They appear here by themselves.')]);
  byId('paired-count').textContent = `(${paired.length})`;
  byId('found-count').textContent = `(${found.length})`;
}

export function renderDevices(m: HTMLElement): void {
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
