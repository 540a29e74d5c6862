// Starts the real callgate binary with a temporary config on free 127.0.0.1 ports.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { canConnect, freePort, sleep, DEFAULT_TIMEOUT_MS } from './util.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..', '..');

export const CALLGATE_BIN = process.env.CALLGATE_BIN || path.join(repoRoot, 'target', 'debug', 'callgate');

// Every callgate started by this process, so an unexpected exit of the test process kills them.
const live = new Set();
function killAll() {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    killAll();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  });
}

function tomlString(s) {
  return JSON.stringify(String(s)); // a JSON string is a valid TOML basic string for our values
}

/**
 * @param {object} opts
 * @param {Record<string,string>} [opts.apps] appKey -> REST URL. `{http}` in a URL is replaced by
 *   the callgate HTTP port (for the built-in EchoApp). defaultApp -> EchoApp unless given.
 * @param {string} [opts.extraToml] appended verbatim (e.g. a [hooks] section; not [media] or [registrar]).
 * @param {Record<string,any>} [opts.media] extra keys of the [media] section, whose UDP port is
 *   always an ephemeral one on 127.0.0.1 (so parallel runs never collide).
 * @param {Record<string,any>} [opts.registrar] extra scalar keys of the [registrar] section (the
 *   embedded registrar, domain "callgate.local"), whose UDP port is always an ephemeral one on
 *   127.0.0.1 rather than 5060, as tests/src start_server has it (not in extraToml).
 */
export async function startCallgate({ apps = {}, extraToml = '', media = {}, registrar = {} } = {}) {
  if (!fs.existsSync(CALLGATE_BIN)) {
    throw new Error(`callgate binary not found at ${CALLGATE_BIN}; build it with 'cargo build -p callgate-server' or set CALLGATE_BIN`);
  }
  let lastFailure;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const wsPort = await freePort();
    let httpPort = await freePort();
    while (httpPort === wsPort) httpPort = await freePort();
    try {
      return await launch({ apps, extraToml, media, registrar, wsPort, httpPort });
    } catch (e) {
      lastFailure = e;
      // A port taken between freePort() and the bind: try other ports.
      if (!/cannot bind|Address already in use/i.test(e.message)) throw e;
    }
  }
  throw lastFailure;
}

async function launch({ apps, extraToml, media, registrar, wsPort, httpPort }) {
  const allApps = { defaultApp: 'http://127.0.0.1:{http}/apps/EchoApp', ...apps };
  let toml = `[server]\nws_bind = "127.0.0.1:${wsPort}"\nhttp_bind = "127.0.0.1:${httpPort}"\n\n`;
  toml += `[media]\nbind = "127.0.0.1:0"\n`;
  for (const [k, v] of Object.entries(media)) toml += `${k} = ${JSON.stringify(v)}\n`;
  toml += '\n';
  toml += `[registrar]\nbind = "127.0.0.1:0"\n`;
  for (const [k, v] of Object.entries(registrar)) toml += `${k} = ${JSON.stringify(v)}\n`;
  toml += '\n';
  toml += `[log]\nfilter = ${tomlString(process.env.CALLGATE_LOG || 'info,callgate_hooks=debug')}\n\n`;
  for (const [key, url] of Object.entries(allApps)) {
    toml += `[apps.${key}]\nurl = ${tomlString(url.replaceAll('{http}', String(httpPort)))}\n\n`;
  }
  toml += extraToml;

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'callgate-e2e-'));
  const configPath = path.join(dir, 'callgate.toml');
  fs.writeFileSync(configPath, toml);

  // Env overrides (CALLGATE_<SECTION>__<KEY>) from the developer's shell must not leak in.
  const env = { ...process.env };
  // CALLGATE_BIN too: the server would read it as a config key (CALLGATE_<SECTION>__<KEY>) and refuse it.
  for (const k of Object.keys(env)) if (k.startsWith('CALLGATE_')) delete env[k];
  delete env.RUST_LOG;
  env.NO_COLOR = '1';

  const child = spawn(CALLGATE_BIN, ['--config', configPath], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let log = '';
  const append = (chunk) => {
    log += chunk.toString();
    if (log.length > 2_000_000) log = log.slice(-1_000_000);
  };
  child.stdout.on('data', append);
  child.stderr.on('data', append);
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      live.delete(child);
      resolve(exited);
    });
    child.once('error', (err) => {
      exited = { code: null, signal: null, error: err.message };
      live.delete(child);
      resolve(exited);
    });
  });

  const server = {
    wsPort,
    httpPort,
    wsUrl: `ws://127.0.0.1:${wsPort}`,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    configPath,
    config: toml,
    pid: child.pid,
    /** Everything the server wrote (tracing goes to stdout, errors to stderr). */
    log: () => log.replace(/\x1b\[[0-9;]*m/g, ''),
    exited: () => exited,
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        const t = await Promise.race([exitPromise, sleep(5000).then(() => null)]);
        if (!t) {
          child.kill('SIGKILL');
          await exitPromise;
        }
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };

  // Readiness: both ports accept TCP connections.
  const deadline = Date.now() + DEFAULT_TIMEOUT_MS;
  for (;;) {
    if (exited) {
      await server.stop();
      throw new Error(`callgate exited before it was ready (${JSON.stringify(exited)}). Config:\n${toml}\nOutput:\n${log}`);
    }
    if ((await canConnect(wsPort)) && (await canConnect(httpPort))) break;
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`callgate did not open ports ${wsPort}/${httpPort} within ${DEFAULT_TIMEOUT_MS} ms. Output:\n${log}`);
    }
    await sleep(50);
  }
  return server;
}
