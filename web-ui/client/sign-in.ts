// First start (the owner proves presence with the setup code and chooses the password) and sign-in.
import { api, ApiError } from './api.js';
import { byId, h } from './dom.js';
import { restart } from './store.js';
import { busy, clearError, errorBox, field, showError, toast } from './ui.js';

export function renderSetup(): void {
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
        await restart();
      } catch (e) {
        showError(err, e, { setupCode: 'setup-code', password: 'setup-password', household: 'setup-household' });
      }
    });
  });
  byId('main').replaceChildren(
    h('h1', {}, 'Welcome'),
    h('p', { class: 'lead' }, 'This page lets you reach the devices in your home from your phones, safely. First, choose the password that protects it.'),
    form,
  );
  code.focus();
}

export function renderLogin(): void {
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
        await restart();
      } catch (e) {
        pw.value = '';
        showError(err, e, { password: 'login-password' });
      }
    });
  });
  byId('main').replaceChildren(h('h1', {}, 'Sign in'), form);
  pw.focus();
}
