// Small shared helpers: free ports, bounded polling with readable failures.
import dgram from 'node:dgram';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export const DEFAULT_TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS || 10_000);

/** A port that was free on 127.0.0.1 a moment ago for both TCP and UDP (callgate's WebSocket
 * and HTTP ports are TCP, sipp's and Kamailio's are UDP; a busy machine may hold the UDP twin
 * of a free TCP port). */
export async function freePort() {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await freeTcpPort();
    if (await udpFree(port)) return port;
  }
  throw new Error('no port free for both TCP and UDP on 127.0.0.1 after 50 tries');
}

function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function udpFree(port) {
  return new Promise((resolve) => {
    const sock = dgram.createSocket('udp4');
    sock.once('error', () => { sock.close(); resolve(false); });
    sock.bind(port, '127.0.0.1', () => sock.close(() => resolve(true)));
  });
}

/** Resolves true if a TCP connection to 127.0.0.1:port succeeds. */
export function canConnect(port, host = '127.0.0.1') {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    const done = (ok) => {
      s.removeAllListeners();
      s.destroy();
      resolve(ok);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(500, () => done(false));
  });
}

/** JSON for failure messages, cut so a huge object does not drown the report. */
export function show(v, max = 4000) {
  let s;
  try {
    s = JSON.stringify(v, null, 1);
  } catch {
    s = String(v);
  }
  if (s === undefined) s = String(v);
  return s.length > max ? `${s.slice(0, max)}… (${s.length - max} more chars)` : s;
}

/**
 * Polls `probe` (sync or async) until it returns a truthy value, which is returned.
 * On timeout throws an Error naming `what` and showing `seen()` (what was observed instead).
 */
export async function waitFor(probe, { what, seen, timeout = DEFAULT_TIMEOUT_MS, interval = 50 } = {}) {
  const deadline = Date.now() + timeout;
  let lastError;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
      lastError = undefined;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() >= deadline) break;
    await sleep(interval);
  }
  let observed = '';
  if (seen) {
    try {
      observed = `\nSeen instead: ${show(await seen())}`;
    } catch (e) {
      observed = `\n(could not collect what was seen: ${e.message})`;
    }
  }
  const cause = lastError ? `\nLast probe error: ${lastError.message}` : '';
  throw new Error(`Timed out after ${timeout} ms waiting for ${what || 'a condition'}${observed}${cause}`);
}

export { sleep };
