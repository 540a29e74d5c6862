// Per-file browser + static page server, per-test callgate + recording backend + SDK page.
import { after, before, test } from 'node:test';
import { startBackend } from './backend.js';
import { launchBrowser, openSdkPage } from './browser.js';
import { startCallgate } from './callgate.js';
import { startStaticServer } from './static-server.js';
import { show } from './util.js';

/**
 * Call once at the top of a test file; returns `e2eTest(name, fn)`. `browserArgs`: extra
 * Chromium flags for this file's browser.
 * `fn(env)` gets env = {callgate, backend, sdk, session(opts)}, where callgate has apps
 * `defaultApp` (built-in EchoApp) and `backendApp` (the recording backend) (and the test's
 * `callgate.apps`, where `{backend}` in a URL is the recording backend's), and
 * `env.session({appKey, custom})` creates the SDK session against this callgate.
 */
export function e2eSuite({ browserArgs = [] } = {}) {
  let browser;
  let staticServer;
  before(async () => {
    browser = await launchBrowser(browserArgs);
    staticServer = await startStaticServer();
  });
  after(async () => {
    await browser?.close();
    await staticServer?.close();
  });

  return function e2eTest(name, fn, { timeout = 60_000, callgate = {} } = {}) {
    test(name, { timeout }, async () => {
      const cleanups = [];
      const env = {};
      try {
        env.backend = await startBackend();
        cleanups.push(() => env.backend.close());
        // `{backend}` in an app's URL: this test's recording backend (e.g. roomApp behind it).
        const apps = Object.fromEntries(Object.entries(callgate.apps || {}).map(([k, v]) => [k, v.replaceAll('{backend}', env.backend.url)]));
        env.callgate = await startCallgate({ ...callgate, apps: { backendApp: env.backend.url, ...apps } });
        cleanups.push(() => env.callgate.stop());
        env.sdk = await openSdkPage(browser, staticServer.url);
        cleanups.push(() => env.sdk.close());
        env.session = (opts = {}) => env.sdk.createSession({ urlServer: env.callgate.wsUrl, ...opts });
        env.pages = [env.sdk];
        // Another SDK page (own browser context), e.g. for a player beside a publisher.
        env.newPage = async () => {
          const p = await openSdkPage(browser, staticServer.url);
          cleanups.push(() => p.close());
          env.pages.push(p);
          return p;
        };
        await fn(env);
      } catch (err) {
        await report(err, env);
        throw err;
      } finally {
        for (const c of cleanups.reverse()) {
          try {
            await c();
          } catch {
            /* best effort */
          }
        }
      }
    });
  };
}

/** Prints everything that helps to understand a failure (callgate output, hooks, page events). */
async function report(err, env) {
  const parts = [`\n===== e2e failure: ${err?.message?.split('\n')[0]} =====`];
  for (const [i, page] of (env.pages || (env.sdk ? [env.sdk] : [])).entries()) {
    try {
      parts.push(`--- page ${i}: SESSION_STATUS events:\n${show(await page.events(), 8000)}`);
      const streams = await page.page.evaluate(() =>
        Object.fromEntries(Object.entries(window.__e2e?.streams || {}).map(([id, r]) => [id, { events: r.events, streamEvents: r.streamEvents }])),
      );
      if (Object.keys(streams).length) parts.push(`--- page ${i}: streams:\n${show(streams, 8000)}`);
    } catch (e) {
      parts.push(`--- page ${i} events unavailable: ${e.message}`);
    }
    parts.push(`--- page ${i}: browser console:\n${page.consoleLines.slice(-60).join('\n')}`);
  }
  if (env.backend) parts.push(`--- backend requests:\n${show(env.backend.summary(), 8000)}`);
  if (env.callgate) {
    const log = env.callgate.log();
    parts.push(`--- callgate (pid ${env.callgate.pid}, exited: ${show(env.callgate.exited())}) config:\n${env.callgate.config}`);
    parts.push(`--- callgate output (last 8000 chars):\n${log.slice(-8000)}`);
  }
  console.error(parts.join('\n'));
}
