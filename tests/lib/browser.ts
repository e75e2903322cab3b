// Debian's Chromium driven by playwright-core for the browser tier: a fresh user-data dir per launch, never a
// downloaded browser, nothing fetched from the Internet (every request off the test server is blocked and
// recorded), and cleanup of the browser and its profile even when a test fails or the run is interrupted.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

const ROOT = resolve(import.meta.dirname, '..', '..', '..');
export const SCREENSHOTS = join(ROOT, 'test-artifacts', 'screenshots');

export const VIEWPORTS = {
  phone: { width: 390, height: 844 },
  desktop: { width: 1280, height: 860 },
} as const;

export interface Browser {
  readonly context: BrowserContext;
  /** Requests the pages tried to make to anything but `allowedOrigin` (all were blocked). */
  readonly offsite: string[];
  /** Console errors and uncaught page errors, as "page: message". */
  readonly errors: string[];
  newPage(viewport: { width: number; height: number }): Promise<Page>;
  /** Saves a full-page screenshot as test-artifacts/screenshots/<name>.png; returns the path. */
  screenshot(page: Page, name: string): Promise<string>;
  close(): Promise<void>;
}

const open = new Set<Browser>();
let hooked = false;

/** Exit and signal handlers cannot await; removing the profile directories is what is left to do there. */
const profiles = new Set<string>();
function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const p of profiles) rmSync(p, { recursive: true, force: true });
  });
}

/** Launches Chromium with a fresh profile; only `allowedOrigin` (the test server) may be reached. */
export async function launchBrowser(allowedOrigin: string): Promise<Browser> {
  hook();
  const profile = mkdtempSync(join(tmpdir(), 'ntm-chromium-'));
  profiles.add(profile);
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      headless: true,
      viewport: VIEWPORTS.desktop,
      locale: 'en-GB',
      timezoneId: 'Asia/Tokyo',
      reducedMotion: 'reduce',
    });
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    profiles.delete(profile);
    throw e;
  }
  const offsite: string[] = [];
  const errors: string[] = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(allowedOrigin + '/') || url.startsWith('data:')) return route.continue();
    offsite.push(url);
    return route.abort('blockedbyclient');
  });
  const b: Browser = {
    context,
    offsite,
    errors,
    async newPage(viewport) {
      const page = await context.newPage();
      await page.setViewportSize(viewport);
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(`console: ${m.text()}`);
      });
      page.on('pageerror', (e) => errors.push(`page: ${e.message}`));
      return page;
    },
    async screenshot(page, name) {
      mkdirSync(SCREENSHOTS, { recursive: true });
      const path = join(SCREENSHOTS, `${name}.png`);
      await page.screenshot({ path, fullPage: true });
      return path;
    },
    async close() {
      open.delete(b);
      try {
        await context.close();
      } finally {
        rmSync(profile, { recursive: true, force: true });
        profiles.delete(profile);
      }
    },
  };
  open.add(b);
  return b;
}

/** Closes every browser this process launched (an after() hook for suites). */
export async function closeAllBrowsers(): Promise<void> {
  await Promise.all([...open].map((b) => b.close()));
}

// Page-side checks, written as scripts (the tests compile without the DOM library; these run in the page).

const PAGE_CHECKS = `(() => {
  const out = [];
  for (const el of document.querySelectorAll('input, textarea, select')) {
    if (el.type === 'hidden' || el.closest('[hidden]')) continue;
    if ((el.labels ? el.labels.length : 0) === 0 && !el.getAttribute('aria-label')) out.push('input #' + el.id + ' has no label');
  }
  for (const b of document.querySelectorAll('button, a[href]')) {
    if (b.closest('[hidden]')) continue;
    if (!(b.textContent || '').trim() && !b.getAttribute('aria-label')) out.push(b.tagName + ' without a name');
  }
  for (const img of document.querySelectorAll('img')) if (!img.hasAttribute('alt')) out.push('img without alt');
  const wide = document.documentElement.scrollWidth;
  if (wide > window.innerWidth + 1) {
    const culprits = [...document.querySelectorAll('main *')].filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1).slice(-3);
    out.push('scrolls sideways: ' + wide + ' > ' + window.innerWidth + ' (' + culprits.map((e) => e.tagName + '.' + e.className).join(', ') + ')');
  }
  const h1 = document.querySelectorAll('h1').length;
  if (h1 !== 1) out.push(h1 + ' h1 elements');
  return out;
})()`;

/** Problems a family would hit: unlabelled inputs, nameless buttons, images without alt, sideways scrolling, not one h1. */
export async function pageProblems(page: Page): Promise<string[]> {
  return (await page.evaluate(PAGE_CHECKS)) as string[];
}

export interface FocusInfo {
  readonly id: string;
  readonly text: string;
  readonly outlineStyle: string;
}

/** What has keyboard focus now: its id, text and whether a focus ring is drawn. */
export async function focused(page: Page): Promise<FocusInfo> {
  return (await page.evaluate(`(() => {
    const a = document.activeElement;
    return a ? { id: a.id, text: (a.textContent || '').trim(), outlineStyle: getComputedStyle(a).outlineStyle } : { id: '', text: '', outlineStyle: '' };
  })()`)) as FocusInfo;
}

/** Console errors that are not the API's deliberate 4xx answers (the tests provoke those). */
export function unexpectedErrors(b: Browser): string[] {
  return b.errors.filter((e) => !/Failed to load resource: the server responded with a status of 4\d\d/.test(e));
}

/** A traffic chart of the status page (web-ui/client/sparkline.ts) as a person reads it. */
export interface ChartReading {
  /** How high each line reaches over its last `recent` steps: 0 is the bottom of the chart, 1 the top. */
  readonly sentRecent: number;
  readonly receivedRecent: number;
  /** The same over the whole window. */
  readonly sentPeak: number;
  /** The chart's label (what a screen reader says, and the tooltip): peaks and current rates in words. */
  readonly label: string;
}

/** Reads the chart in `scope` (a tunnel row): the drawn lines' heights and the label. */
export async function readChart(scope: Locator, recent = 3): Promise<ChartReading> {
  const svg = scope.locator('svg.spark');
  const height = Number(await svg.getAttribute('height'));
  const rises = async (cls: string): Promise<number[]> =>
    ((await svg.locator(`polyline.${cls}`).getAttribute('points')) ?? '')
      .trim()
      .split(/\s+/)
      .map((p) => (height - 1 - Number(p.split(',')[1])) / (height - 2));
  const sent = await rises('tx');
  const received = await rises('rx');
  return {
    sentRecent: Math.max(...sent.slice(-recent)),
    receivedRecent: Math.max(...received.slice(-recent)),
    sentPeak: Math.max(...sent),
    label: (await svg.getAttribute('aria-label')) ?? '',
  };
}
