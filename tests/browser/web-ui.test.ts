// The household page in real Chromium against the fake agent: first start with the setup code, a discovered
// device appearing by itself, pairing it, adding a phone (the token read from the page), granting access, the
// status updating live; at desktop and phone width; pairing with the keyboard only; a screenshot of every page.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { FakeAgent } from '../../agent/src/agent/fake-agent.js';
import { HouseholdStore } from '../../agent/src/agent/household-store.js';
import type { DiscoveredDevice } from '../../agent/src/discovery/types.js';
import { silentLogger } from '../../agent/src/util/log.js';
import { createWebApp, type WebApp } from '../../web-ui/server/app.js';
import { closeAllBrowsers, focused, launchBrowser, pageProblems, readChart, unexpectedErrors, VIEWPORTS, type Browser } from '../lib/browser.js';
import { waitFor } from '../lib/ntm.js';

const CODE = 'K7QM-2XPA-9RWD';
const PASSWORD = 'correct horse battery';
const PHONE = '0x' + 'c3'.repeat(20);

function device(name: string, n: number, over: Partial<DiscoveredDevice> = {}): DiscoveredDevice {
  return {
    name,
    kind: '',
    mac: `02:00:00:00:00:${n.toString(16).padStart(2, '0')}`,
    ipv4: `192.168.1.${n}`,
    ipv6: null,
    host: name ? `${name.toLowerCase().replace(/\W+/g, '-')}.local` : null,
    online: true,
    sources: name ? ['mdns', 'neighbour'] : ['neighbour'],
    lastSeen: Date.now(),
    services: [],
    ...over,
  };
}

const LAMP = device('Living Room Lamp', 0x10, { kind: 'lamp' });
const PRINTER = device('Office Printer', 0x14, { kind: 'printer' });
const UNKNOWN = device('', 0x15);
const CAMERA = device('Hall Camera', 0x11, { kind: 'camera' });

async function checkPage(page: Page, what: string): Promise<void> {
  assert.deepEqual(await pageProblems(page), [], what);
}

describe('household page in Chromium (fake agent)', () => {
  let dir: string;
  let store: HouseholdStore;
  let fake: FakeAgent;
  let app: WebApp;
  let base: string;
  let browser: Browser;
  let desktop: Page;
  let lampId = 0;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ntm-browser-'));
    store = HouseholdStore.open(join(dir, 'agent.db'));
    fake = new FakeAgent({ store, pairDelayMs: 150 });
    app = createWebApp({ api: fake, store, setupCode: CODE, log: silentLogger, live: { intervalMs: 250 } });
    const { port } = await app.listen('127.0.0.1:0');
    base = `http://127.0.0.1:${port}`;
    browser = await launchBrowser(base);
    desktop = await browser.newPage(VIEWPORTS.desktop);
  });

  after(async () => {
    await closeAllBrowsers();
    await app?.close();
    store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('first start: the setup code and a new password', async () => {
    await desktop.goto(base + '/');
    await desktop.getByRole('heading', { name: 'Welcome' }).waitFor();
    await checkPage(desktop, 'setup');
    assert.equal(await desktop.getByRole('navigation').isVisible(), false, 'no sections before the password is set');
    assert.equal(await desktop.getByRole('button', { name: 'Sign out' }).isVisible(), false);
    await browser.screenshot(desktop, 'setup-desktop');
    // A wrong code is refused with a message, and focus goes to the code field.
    await desktop.getByLabel('Setup code').fill('AAAA-BBBB-CCCC');
    await desktop.getByLabel('Name of your home').fill('Tanaka home');
    await desktop.getByLabel('New password', { exact: true }).fill(PASSWORD);
    await desktop.getByLabel('New password again').fill(PASSWORD);
    await desktop.getByRole('button', { name: 'Set password' }).click();
    await desktop.getByRole('alert').filter({ hasText: 'setup code is not right' }).waitFor();
    assert.equal((await focused(desktop)).id, 'setup-code');
    await desktop.getByLabel('Setup code').fill(CODE.toLowerCase());
    await desktop.getByRole('button', { name: 'Set password' }).click();
    await desktop.getByRole('heading', { name: 'Devices', level: 1 }).waitFor();
    assert.equal(await desktop.locator('#household-name').textContent(), 'Tanaka home');
    assert.equal(store.hasOwner(), true);
  });

  test('devices: a discovered device appears by itself; one click pairs it', async () => {
    await desktop.locator('#found-list').getByText('Looking for devices').waitFor();
    fake.discover([LAMP, PRINTER, UNKNOWN]);
    const lampCard = desktop.locator('#found-list li.card', { hasText: 'Living Room Lamp' });
    await lampCard.waitFor({ timeout: 5000 });
    assert.match((await lampCard.textContent()) ?? '', /Online/);
    await desktop.locator('#found-list li.card', { hasText: '192.168.1.21' }).getByLabel('Name this device').waitFor();
    await checkPage(desktop, 'devices');
    await browser.screenshot(desktop, 'devices-desktop');
    await lampCard.getByRole('button', { name: 'Pair Living Room Lamp' }).click();
    const paired = desktop.locator('#paired-list li.card', { hasText: 'Living Room Lamp' });
    await paired.getByText('198.18.0.2').waitFor();
    assert.match((await paired.textContent()) ?? '', /Phones reach it at/);
    lampId = store.devices().find((d) => d.name === 'Living Room Lamp')!.id;
    assert.equal(store.device(lampId).paired, true);
    // The unnamed device needs a name: pairing without one says so next to the field.
    // While that request is on its way a live update (another device found) re-renders the list, as the lamp's own
    // updates did in a clean-clone CI run: the answer still shows, in the card the page shows now.
    const unknown = desktop.locator('#found-list li.card', { hasText: '192.168.1.21' });
    const pairing = '**/api/devices/*/pairing';
    await desktop.route(pairing, async (route) => {
      fake.discover([LAMP, PRINTER, UNKNOWN, CAMERA]);
      await desktop.locator('#found-list li.card', { hasText: 'Hall Camera' }).waitFor();
      await route.continue();
    });
    await unknown.getByRole('button', { name: 'Pair' }).click();
    await unknown.getByRole('alert').filter({ hasText: 'name' }).waitFor({ timeout: 5000 });
    await desktop.unroute(pairing);
    // The next live update (the camera leaves) re-renders the list again: what the page said, and the field it
    // marked, stay.
    fake.discover([LAMP, PRINTER, UNKNOWN]);
    await desktop.locator('#found-list li.card', { hasText: 'Hall Camera' }).filter({ hasText: 'Offline' }).waitFor();
    assert.ok(await unknown.getByRole('alert').filter({ hasText: 'name' }).isVisible(), 'the error survives the re-render');
    assert.equal(await unknown.getByLabel('Name this device').getAttribute('aria-invalid'), 'true');
  });

  test('phones: "add a phone" shows a QR code and the token; the phone appears once enrolled', async () => {
    await desktop.getByRole('navigation').getByRole('link', { name: 'Phones' }).click();
    await desktop.getByRole('heading', { name: 'Phones', level: 1 }).waitFor();
    await desktop.getByLabel('Name of the phone').fill("Anna's phone");
    await desktop.getByRole('button', { name: 'Create code' }).click();
    const qr = desktop.locator('#enroll-qr');
    await qr.waitFor();
    assert.ok(Number(await desktop.evaluate("document.getElementById('enroll-qr').naturalWidth")) > 0, 'the QR image renders');
    assert.match((await qr.getAttribute('alt')) ?? '', /QR code to add Anna's phone/);
    const token = await desktop.getByLabel('Token').inputValue();
    const link = await desktop.getByLabel('Link').inputValue();
    assert.match(token, /^ntm1:/);
    assert.equal(link, `ntm://enroll#${token}`);
    await checkPage(desktop, 'phones with QR');
    await browser.screenshot(desktop, 'phones-add-desktop');
    // The phone runs `ntm enroll <token>`; the DC admits it; the page notices by itself.
    assert.ok(fake.enrollPhone(token, PHONE));
    await desktop.locator('#enroll-done').getByText("Anna's phone was added").waitFor({ timeout: 5000 });
    const card = desktop.locator('#phone-list li.card', { hasText: "Anna's phone" });
    await card.getByText('Online').waitFor();
    await browser.screenshot(desktop, 'phones-desktop');
  });

  test('access: allow the phone to reach the lamp on two ports', async () => {
    await desktop.getByRole('navigation').getByRole('link', { name: 'Access' }).click();
    const box = desktop.locator(`fieldset[data-grant="${PHONE}-${lampId}"]`);
    await box.waitFor();
    assert.match((await box.textContent()) ?? '', /Not allowed/);
    await box.getByLabel("Anna's phone may reach Living Room Lamp").check();
    await box.getByLabel('Ports').fill('80, 443');
    await box.getByRole('button', { name: 'Save' }).click();
    await box.getByText('Allowed: ports 80, 443').waitFor();
    assert.deepEqual(store.grants(), [{ phoneId: PHONE, deviceId: lampId, ports: [80, 443] }]);
    // A bad port is refused before anything is sent.
    await box.getByLabel('Ports').fill('80, 99999');
    await box.getByRole('button', { name: 'Save' }).click();
    await box.getByRole('alert').filter({ hasText: '99999' }).waitFor();
    assert.deepEqual(store.grants()[0]!.ports, [80, 443]);
    await box.getByLabel('Ports').fill('80, 443');
    await checkPage(desktop, 'access');
    await browser.screenshot(desktop, 'access-desktop');
  });

  test('status: health, a live tunnel and its counters, events — without reloading', async () => {
    await desktop.getByRole('navigation').getByRole('link', { name: 'Status' }).click();
    await desktop.getByRole('heading', { name: 'Health' }).waitFor();
    await desktop.locator('#health-list').getByText('Direction Coordinator').waitFor();
    assert.match((await desktop.locator('#health-list').textContent()) ?? '', /✓ OK/);
    await desktop.getByText('No phone is connected right now.').waitFor();
    const t0 = Date.now();
    fake.openTunnel({ deviceId: lampId, phoneId: PHONE, path: 'hole-punched', rttMs: 18 });
    const row = desktop.locator('#tunnel-body tr', { hasText: 'Living Room Lamp' });
    await row.waitFor({ timeout: 5000 });
    const seenMs = Date.now() - t0;
    assert.match((await row.textContent()) ?? '', /Anna's phone.*Direct \(through NAT\).*up.*18 ms.*0 B.*0 B/);
    fake.tick(1500);
    await row.getByText('1.5 kB').waitFor({ timeout: 5000 });
    // The chart of the connection's traffic: drawn at the agent's next step, then rising with the next burst.
    const step0 = Date.now();
    fake.sampleTraffic(step0);
    await row.locator('svg.spark').waitFor({ timeout: 5000 });
    const quiet = await readChart(row);
    assert.ok(quiet.sentPeak < 0.5, `1.5 kB in 5 s stays low on the chart: ${JSON.stringify(quiet)}`);
    fake.tick(500_000);
    fake.sampleTraffic(step0 + 5000);
    const busy = await waitFor('the chart to rise', async () => {
      const c = await readChart(row);
      // Received (1 MB in the step) fills the chart; sent (500 kB) reaches half way.
      return c.receivedRecent > 0.99 && c.sentRecent > 0.45 && c;
    });
    assert.match(busy.label, /^Last 5 minutes: sent at most 100 kB\/s, received at most 200 kB\/s; now sent 100 kB\/s, received 200 kB\/s$/);
    assert.match((await row.locator('.spark-now').textContent()) ?? '', /now: sent 100 kB\/s, received 200 kB\/s/);
    await desktop.locator('#event-list').getByText("Anna's phone connected to Living Room Lamp").waitFor();
    // A problem is shown in words, not only in colour.
    fake.setHealth({ rs: false });
    await desktop.locator('#health-list li', { hasText: 'Relay Server' }).getByText('✗ Problem').waitFor({ timeout: 5000 });
    fake.setHealth({ rs: true });
    await desktop.locator('#health-list li', { hasText: 'Relay Server' }).getByText('✓ OK').waitFor({ timeout: 5000 });
    console.log(`# a new tunnel showed on the status page ${seenMs} ms after it opened (server-sent events)`);
    await checkPage(desktop, 'status');
    await browser.screenshot(desktop, 'status-desktop');
    await desktop.getByRole('navigation').getByRole('link', { name: 'Settings' }).click();
    await desktop.getByRole('heading', { name: 'Settings', level: 1 }).waitFor();
    await checkPage(desktop, 'settings');
    await browser.screenshot(desktop, 'settings-desktop');
  });

  test('phone width: every page fits and still updates live', async () => {
    const phone = await browser.newPage(VIEWPORTS.phone);
    for (const p of ['devices', 'phones', 'access', 'status', 'settings']) {
      await phone.goto(`${base}/#${p}`);
      await phone.getByRole('heading', { level: 1, name: p.charAt(0).toUpperCase() + p.slice(1) }).waitFor();
      if (p === 'status') {
        await phone.locator('#tunnel-body tr', { hasText: 'Living Room Lamp' }).waitFor();
        fake.tick(1_000_000);
        await phone.locator('#tunnel-body').getByText('1.0 MB').waitFor({ timeout: 5000 });
        // The tunnel table becomes labelled rows rather than a wide table.
        assert.equal(await phone.evaluate("getComputedStyle(document.querySelector('#tunnel-body td'), '::before').content"), '"Device"');
      }
      await checkPage(phone, `${p} at phone width`);
      await browser.screenshot(phone, `${p}-phone`);
    }
    await phone.close();
  });

  test('keyboard only: reach a discovered device\'s Pair button with Tab and pair it with Enter', async () => {
    const page = await browser.newPage(VIEWPORTS.desktop);
    await page.goto(`${base}/#devices`);
    await page.getByRole('heading', { name: 'Devices', level: 1 }).waitFor();
    fake.discover([LAMP, PRINTER, UNKNOWN, CAMERA]);
    await page.locator('#found-list li.card', { hasText: 'Hall Camera' }).waitFor();
    let reached = false;
    for (let i = 0; i < 60 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = (await focused(page)).text === 'Pair Hall Camera';
    }
    assert.ok(reached, 'the Pair button is reachable with Tab');
    assert.notEqual((await focused(page)).outlineStyle, 'none', 'the focused button shows a focus ring');
    await page.keyboard.press('Enter');
    await page.locator('#paired-list li.card', { hasText: 'Hall Camera' }).waitFor();
    // Focus lands on the newly paired device, so a keyboard user knows where they are.
    await page.waitForFunction("(document.activeElement?.textContent ?? '') === 'Hall Camera'");
    assert.equal(store.devices().find((d) => d.name === 'Hall Camera')!.paired, true);
    await page.close();
  });

  test('unpairing asks first, and a live update does not pull the question away', async () => {
    await desktop.goto(`${base}/#devices`);
    const card = desktop.locator('#paired-list li.card', { hasText: 'Hall Camera' });
    await card.getByRole('button', { name: 'Unpair' }).click();
    const yes = card.getByRole('button', { name: 'Yes, unpair Hall Camera' });
    await yes.waitFor();
    assert.equal((await focused(desktop)).text, 'Yes, unpair Hall Camera', 'focus moves to the question');
    // The printer leaves the LAN meanwhile: the lists change, the question stays.
    fake.discover([LAMP, UNKNOWN, CAMERA]);
    await new Promise((r) => setTimeout(r, 800));
    assert.ok(await yes.isVisible(), 'the question is still there');
    await yes.click();
    await desktop.locator('#found-list li.card', { hasText: 'Hall Camera' }).waitFor();
    assert.match((await desktop.locator('#found-list li.card', { hasText: 'Office Printer' }).textContent()) ?? '', /Offline/);
    assert.equal(store.devices().find((d) => d.name === 'Hall Camera')!.paired, false);
  });

  test('a home whose DC has no address left: pairing says so next to the device', async () => {
    await desktop.goto(`${base}/#devices`);
    fake.capacity = store.devices().filter((d) => d.paired).length + store.phones().length;
    try {
      const card = desktop.locator('#found-list li.card', { hasText: 'Hall Camera' });
      await card.getByRole('button', { name: 'Pair Hall Camera' }).click();
      await card.getByRole('alert').filter({ hasText: `this home has reached ${fake.capacity} device` }).waitFor();
      await browser.screenshot(desktop, 'devices-home-full');
      assert.equal(store.devices().find((d) => d.name === 'Hall Camera')!.paired, false);
    } finally {
      fake.capacity = undefined;
    }
  });

  test('sign out, then sign in with the keyboard', async () => {
    await desktop.getByRole('button', { name: 'Sign out' }).click();
    await desktop.getByRole('heading', { name: 'Sign in' }).waitFor();
    assert.equal(await desktop.getByRole('navigation').isVisible(), false);
    await checkPage(desktop, 'sign-in');
    await browser.screenshot(desktop, 'sign-in-desktop');
    await desktop.keyboard.type('not the password');
    await desktop.keyboard.press('Enter');
    await desktop.getByRole('alert').filter({ hasText: 'password is not right' }).waitFor();
    await desktop.keyboard.type(PASSWORD);
    await desktop.keyboard.press('Enter');
    await desktop.getByRole('navigation').waitFor();
    await desktop.locator('h1').first().waitFor();
    // Nothing was fetched from anywhere but the agent; no script errors.
    assert.deepEqual(browser.offsite, []);
    assert.deepEqual(unexpectedErrors(browser), []);
  });
});
