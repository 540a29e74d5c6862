// Headless Debian Chromium through playwright-core, and a thin driver for the SDK in the page.
import { chromium } from 'playwright-core';
import { waitFor } from './util.js';

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--autoplay-policy=no-user-gesture-required',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/** `extraArgs`: flags one test file needs beside CHROMIUM_ARGS (tls.test.js trusts its certificate). */
export function launchBrowser(extraArgs = []) {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS, ...extraArgs] });
}

/**
 * Opens the test page in a fresh context; returns a driver for one SDK session.
 * Browser console output and page errors are kept for failure reports.
 */
export async function openSdkPage(browser, pageUrl) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.message}`));
  await page.goto(pageUrl);
  await page.waitForFunction(() => typeof window.Flashphoner === 'object' && !!window.Flashphoner.createSession, null, { timeout: 10_000 });
  return new SdkPage(context, page, consoleLines);
}

export class SdkPage {
  constructor(context, page, consoleLines) {
    this.context = context;
    this.page = page;
    this.consoleLines = consoleLines;
  }

  /**
   * Flashphoner.init({}) then Flashphoner.createSession(options); every SESSION_STATUS callback
   * is recorded as {name, payload} in window.__e2e.events (payload: the callback's non-session
   * argument, JSON-cloned; null for CONNECTED/DISCONNECTED/FAILED).
   */
  async createSession(options) {
    await this.page.evaluate(async (opts) => {
      await Flashphoner.init({});
      const S = Flashphoner.constants.SESSION_STATUS;
      const clone = (v) => {
        try {
          return v === undefined ? null : JSON.parse(JSON.stringify(v));
        } catch (e) {
          return { unclonable: String(e) };
        }
      };
      const e2e = (window.__e2e = { events: [], appData: [] });
      const session = Flashphoner.createSession(opts);
      e2e.session = session;
      for (const name of new Set(Object.values(S))) {
        session.on(name, (...args) => {
          const rest = args.filter((a) => a !== session);
          e2e.events.push({ name, payload: rest.length ? clone(rest[0]) : null, at: Date.now() });
          if (name === S.APP_DATA) e2e.appData.push(clone(rest[0]));
        });
      }
    }, options);
  }

  /** The recorded SESSION_STATUS events so far. */
  events() {
    return this.page.evaluate(() => (window.__e2e ? window.__e2e.events.map(({ name, payload }) => ({ name, payload })) : []));
  }

  async eventNames() {
    return (await this.events()).map((e) => e.name);
  }

  /** Waits for a SESSION_STATUS event `name` (optionally matching `pred`); returns it. */
  waitForEvent(name, pred = () => true, what) {
    return waitFor(async () => (await this.events()).find((e) => e.name === name && pred(e.payload)), {
      what: what || `SESSION_STATUS ${name} in the page`,
      seen: () => this.events(),
    });
  }

  /** session.sendData(payload): {outcome:'resolved'|'rejected', value}, bounded. */
  sendData(payload, timeoutMs = 10_000) {
    return this.page.evaluate(
      ({ payload, timeoutMs }) =>
        new Promise((resolve) => {
          const timer = setTimeout(() => resolve({ outcome: 'timeout', value: null }), timeoutMs);
          const settle = (outcome) => (value) => {
            clearTimeout(timer);
            resolve({ outcome, value: value === undefined ? null : JSON.parse(JSON.stringify(value)) });
          };
          try {
            window.__e2e.session.sendData(payload).then(settle('resolved'), settle('rejected'));
          } catch (e) {
            settle('threw')(String(e));
          }
        }),
      { payload, timeoutMs },
    );
  }

  disconnect() {
    return this.page.evaluate(() => window.__e2e.session.disconnect());
  }

  sessionStatus() {
    return this.page.evaluate(() => window.__e2e.session.status());
  }

  close() {
    return this.context.close();
  }
}
