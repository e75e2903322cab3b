// Issue 13, part 1 in real Chromium against two fake agents (two households, two pages): home B's owner shares the
// camera with "Suzuki home" on the Sharing page and reads the invitation code off it; home A's owner pastes the code,
// ticks the laptop and accepts; A's page shows the camera's name on A's network and who may use it, and can change
// that; once A's agent used the code at B's DC, B's page lists the share, and "Stop sharing" ends it in B's store.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { FakeAgent } from '../../agent/src/agent/fake-agent.js';
import { HouseholdStore } from '../../agent/src/agent/household-store.js';
import { decodeShareInvite } from '../../agent/src/agent/share-invite.js';
import { silentLogger } from '../../agent/src/util/log.js';
import { createWebApp, type WebApp } from '../../web-ui/server/app.js';
import { closeAllBrowsers, launchBrowser, pageProblems, unexpectedErrors, VIEWPORTS, type Browser } from '../lib/browser.js';
import { waitFor } from '../lib/ntm.js';

const CODE = 'K7QM-2XPA-9RWD';
const PASSWORD = 'correct horse battery';

interface Home {
  store: HouseholdStore;
  fake: FakeAgent;
  app: WebApp;
  base: string;
  browser: Browser;
  page: Page;
}

async function home(dir: string, name: string): Promise<Home> {
  const store = HouseholdStore.open(join(dir, `${name}.db`));
  const fake = new FakeAgent({ store });
  const app = createWebApp({ api: fake, store, setupCode: CODE, log: silentLogger, live: { intervalMs: 250 } });
  const { port } = await app.listen('127.0.0.1:0');
  const base = `http://127.0.0.1:${port}`;
  const browser = await launchBrowser(base);
  const page = await browser.newPage(VIEWPORTS.desktop);
  await page.goto(base + '/');
  await page.getByLabel('Setup code').fill(CODE);
  await page.getByLabel('Name of your home').fill(name);
  await page.getByLabel('New password', { exact: true }).fill(PASSWORD);
  await page.getByLabel('New password again').fill(PASSWORD);
  await page.getByRole('button', { name: 'Set password' }).click();
  await page.getByRole('heading', { name: 'Devices', level: 1 }).waitFor();
  return { store, fake, app, base, browser, page };
}

describe('sharing a device between two homes, in Chromium (fake agents)', () => {
  let dir: string;
  let a: Home;
  let b: Home;
  let code = '';
  let laptopId = 0;
  let speakerId = 0;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ntm-browser-share-'));
    b = await home(dir, 'Sato home');
    a = await home(dir, 'Suzuki home');
    await b.fake.pair({ name: 'camera', ipv4: '192.168.2.11' });
    laptopId = (await a.fake.pair({ name: 'laptop', ipv4: '192.168.1.12' })).id;
    speakerId = (await a.fake.pair({ name: 'speaker', ipv4: '192.168.1.13' })).id;
  });

  after(async () => {
    await closeAllBrowsers();
    for (const h of [a, b]) {
      await h?.app.close();
      h?.store.close();
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("B's owner shares the camera with another home and gets an invitation code", async () => {
    const p = b.page;
    await p.getByRole('navigation').getByRole('link', { name: 'Sharing' }).click();
    await p.getByRole('heading', { name: 'Sharing', level: 1 }).waitFor();
    await p.locator('#share-list').getByText('No device is shared').waitFor();
    await p.getByLabel('Device to share', { exact: true }).selectOption({ label: 'camera' });
    await p.getByLabel('The other home', { exact: true }).fill('Suzuki home');
    await p.getByLabel('Ports', { exact: true }).fill('80, 5004');
    await p.getByRole('button', { name: 'Create invitation' }).click();
    code = await p.getByLabel('Invitation code', { exact: true }).inputValue();
    const d = decodeShareInvite(code);
    assert.ok(d.ok, code);
    assert.equal(d.invite.device, 'camera');
    assert.equal(d.invite.token.household, 'Sato home');
    assert.match((await p.locator('#share-invite').textContent()) ?? '', /ports 80, 5004/);
    assert.deepEqual(await pageProblems(p), []);
    await b.browser.screenshot(p, 'sharing-invite-desktop');
  });

  test("A's owner pastes the code, ticks the laptop and accepts; the page shows the camera's name and its users", async () => {
    const p = a.page;
    await p.getByRole('navigation').getByRole('link', { name: 'Sharing' }).click();
    await p.getByLabel('Invitation code from the other home').fill('ntm-share1:garbage');
    await p.getByRole('button', { name: 'Accept' }).click();
    await p.locator('#accept-error').getByText(/damaged|malformed|invitation/).waitFor();
    await p.getByLabel('Invitation code from the other home').fill(code);
    await p.locator('#accept-form').getByLabel('laptop').check();
    await p.getByRole('button', { name: 'Accept' }).click();
    const card = p.locator('#remote-list li.card', { hasText: 'camera of Sato home' });
    await card.getByText('camera.sato-home.ntm').waitFor();
    assert.deepEqual(a.store.remoteShares.list()[0]!.users, [laptopId]);
    // The speaker too, then only the speaker: saved as shown.
    await card.getByLabel('speaker').check();
    await card.getByLabel('laptop').uncheck();
    await card.getByRole('button', { name: 'Save who may use it' }).click();
    await waitFor('the users saved', () => a.store.remoteShares.list()[0]!.users.join() === String(speakerId), 5000);
    assert.deepEqual(await pageProblems(p), []);
    await a.browser.screenshot(p, 'sharing-accepted-desktop');
  });

  test("once A's agent used the code at B's DC, B's page lists the share; Stop sharing ends it", async () => {
    const d = decodeShareInvite(code);
    assert.ok(d.ok);
    // What B's DC does when A's agent registers with the invitation's secret (agent/runtime.ts admit()).
    const peer = a.store.remoteShares.list()[0]!.ntmId;
    assert.ok(b.store.consumeEnrollment(d.invite.token.secret, peer));
    const p = b.page;
    await p.reload();
    const card = p.locator('#share-list li.card', { hasText: 'camera → Suzuki home' });
    await card.getByText('ports 80, 5004').waitFor();
    await card.getByRole('button', { name: 'Stop sharing' }).click();
    await card.getByRole('button', { name: 'Yes, stop sharing' }).click();
    await p.locator('#share-list').getByText('No device is shared').waitFor();
    assert.deepEqual(b.store.households(), []);
    assert.equal(b.store.accessRules().length, 0);
    assert.deepEqual([...unexpectedErrors(a.browser), ...unexpectedErrors(b.browser)], []);
  });
});
