// The Settings page: the household's name, the owner's password, and the fingerprint of the agent's HTTPS certificate.
import { api } from './api.js';
import { byId, h } from './dom.js';
import { state } from './store.js';
import { busy, clearError, errorBox, field, showError, toast } from './ui.js';

export function renderSettings(m: HTMLElement): void {
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
  m.replaceChildren(h('h1', {}, 'Settings'), nameForm, pwForm, connectionPanel());
}

/** The agent's certificate fingerprint, to compare with what the agent printed at first start and the browser shows. */
function connectionPanel(): HTMLElement {
  const said = h('p', { id: 'connection-state' }, 'Checking…');
  const fp = h('code', { id: 'tls-fingerprint', class: 'fingerprint' });
  const panel = h(
    'section',
    { class: 'panel', 'aria-labelledby': 'connection-h' },
    h('h2', { id: 'connection-h' }, 'Secure connection'),
    said,
    h('p', {}, 'Certificate fingerprint (SHA-256): ', fp),
    h('p', { class: 'hint' }, 'Before you trust the certificate in your browser, check that it shows this same fingerprint, and that it matches the one the agent printed when it first started.'),
  );
  void api.connection().then(
    (c) => {
      said.textContent = c.tls ? 'This page came over HTTPS (encrypted).' : 'This page came over plain HTTP: use the https:// address on port 8443 for an encrypted connection.';
      fp.textContent = c.fingerprint ?? 'none (HTTPS is turned off)';
    },
    () => (said.textContent = 'The connection details could not be read.'),
  );
  return panel;
}
