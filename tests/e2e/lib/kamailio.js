// Kamailio as registrar and proxy for SDK sessions (tests/kamailio/kamailio.cfg: users 3000 and
// 3001, passwords secret3000 / secret3001), started like the Rust harness (tests/src/peers.rs)
// does: one UDP socket on 127.0.0.1, foreground, bounded by timeout(1), its own process group.
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, sleep } from './util.js';

const CONFIG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'kamailio', 'kamailio.cfg');

/** Sends OPTIONS until Kamailio answers 200 (bounded). */
async function answersOptions(port, untilMs) {
  const sock = dgram.createSocket('udp4');
  await new Promise((r) => sock.bind(0, '127.0.0.1', r));
  const local = `127.0.0.1:${sock.address().port}`;
  try {
    for (let n = 0; Date.now() < untilMs; n++) {
      const msg = `OPTIONS sip:127.0.0.1:${port} SIP/2.0\r\nVia: SIP/2.0/UDP ${local};branch=z9hG4bK-e2e-${n}\r\n` +
        `From: <sip:probe@${local}>;tag=probe\r\nTo: <sip:127.0.0.1:${port}>\r\nCall-ID: e2e-probe-${n}@${local}\r\n` +
        `CSeq: ${n + 1} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n`;
      const got = new Promise((resolve) => {
        const t = setTimeout(() => resolve(false), 200);
        sock.once('message', (m) => { clearTimeout(t); resolve(m.toString().startsWith('SIP/2.0 200 ')); });
      });
      sock.send(msg, port, '127.0.0.1');
      if (await got) return true;
      await sleep(50);
    }
    return false;
  } finally {
    sock.close();
  }
}

export async function startKamailio({ lifetimeS = 300 } = {}) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-kamailio-'));
  const args = ['--kill-after=5s', `${lifetimeS}s`, process.env.KAMAILIO || 'kamailio', '-f', CONFIG,
    '-l', `udp:127.0.0.1:${port}`, '-P', path.join(dir, 'kamailio.pid'), '-Y', dir, '-w', dir,
    '-E', '-DD', '-m', '64', '-M', '8'];
  const child = spawn('timeout', args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  const stop = () => {
    if (child.exitCode !== null) return;
    try { process.kill(-child.pid, 'SIGTERM'); } catch { /* gone */ }
  };
  if (!(await answersOptions(port, Date.now() + 10_000))) {
    stop();
    throw new Error(`kamailio did not answer OPTIONS on 127.0.0.1:${port}; log:\n${log.slice(-4000)}`);
  }
  return { port, log: () => log, stop };
}
