// SIP calls with the official SDK: a sipp peer spawned from node, and helpers that drive
// session.createCall() in a page and record every CALL_STATUS in window.__e2e.calls[callId].
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from './util.js';

const SIPP_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'sipp');

/** callgate's [sip] section for tests: an ephemeral port on 127.0.0.1. */
export const SIP_TOML = '[sip]\nbind = "127.0.0.1:0"\n';

/**
 * A sipp callee that answers with PCMU and talks: it plays `seconds` of a 440 Hz PCMU tone (a pcap
 * made by tests/sipp/pcmu_pcap.py) to the caller's RTP address, then waits for the caller's BYE
 * (tests/sipp/uas_answer_play_pcap.xml.in, made concrete in a temporary directory: sipp reads
 * the pcap's path when it loads the scenario).
 */
export async function startTalkingSipp(seconds, opts = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-talking-'));
  const pcap = path.join(dir, 'tone.pcap');
  const { spawnSync } = await import('node:child_process');
  const made = spawnSync('/usr/bin/python3', [path.join(SIPP_DIR, 'pcmu_pcap.py'), pcap, '--seconds', String(seconds)]);
  if (made.status !== 0) throw new Error(`pcmu_pcap.py failed: ${made.stderr}`);
  const scenario = path.join(dir, 'uas_answer_play_pcap.xml');
  fs.writeFileSync(scenario, fs.readFileSync(path.join(SIPP_DIR, 'uas_answer_play_pcap.xml.in'), 'utf8').replaceAll('@PCAP@', pcap));
  return startSipp(scenario, { timeoutS: seconds + 30, ...opts });
}

/** Starts sipp running `scenario` (tests/sipp) once on 127.0.0.1; `wait()` resolves its exit code. */
export async function startSipp(scenario, { keys = {}, timeoutS = 30, rtpEcho = false, remote, service, pauseMs } = {}) {
  const port = await freePort();
  const mediaPort = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-sipp-'));
  const file = path.isAbsolute(scenario) ? scenario : path.join(SIPP_DIR, scenario);
  const args = ['-sf', file, '-i', '127.0.0.1', '-mi', '127.0.0.1', '-ci', '127.0.0.1',
    '-nostdin', '-p', String(port), '-m', '1', '-timeout', `${timeoutS}s`, '-timeout_error',
    '-trace_msg', '-message_file', path.join(dir, 'messages.log')];
  // sipp's media port (written in its SDP as [media_port]); with rtpEcho, sipp sends every RTP
  // packet it gets back to its sender.
  args.push('-mp', String(mediaPort));
  if (rtpEcho) args.push('-rtp_echo');
  // As a UAC: the target (host:port), the Request-URI user (-s) and the scenario's <pause/> (-d).
  if (service) args.push('-s', service);
  if (pauseMs !== undefined) args.push('-d', String(pauseMs));
  if (remote) args.push(remote);
  for (const [k, v] of Object.entries(keys)) args.push('-key', k, v);
  const child = spawn(process.env.SIPP || 'sipp', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  await new Promise((r) => setTimeout(r, 300)); // let it bind
  // A caller may already be done (exit 0); any other early exit (a port taken, a scenario
  // that does not load) fails here with sipp's own words rather than as a later time-out.
  if (child.exitCode !== null && child.exitCode !== 0) {
    throw new Error(`sipp ${scenario} exited at once (code ${child.exitCode}) on port ${port}: ${stderr.slice(-2000)}`);
  }
  return {
    port,
    messages: () => { try { return fs.readFileSync(path.join(dir, 'messages.log'), 'utf8'); } catch { return ''; } },
    wait: () => exited,
    stop: () => { if (child.exitCode === null) child.kill(); },
    stderr: () => stderr,
  };
}

/** session.createCall({callee, ...}).call(); returns the call id. */
export function startCall(sdk, callee, options = {}) {
  return sdk.page.evaluate(({ callee, options }) => {
    const e2e = window.__e2e;
    e2e.calls = e2e.calls || {};
    const display = document.createElement('div');
    document.body.appendChild(display);
    const call = e2e.session.createCall({ callee, visibleName: 'e2e', localVideoDisplay: display, remoteVideoDisplay: display,
      constraints: { audio: true, video: false }, ...options });
    const rec = { call, events: [] };
    e2e.calls[call.id()] = rec;
    for (const status of new Set(Object.values(Flashphoner.constants.CALL_STATUS))) {
      call.on(status, () => rec.events.push(status));
    }
    call.call();
    return call.id();
  }, { callee, options });
}

export function callEvents(sdk, id) {
  return sdk.page.evaluate((id) => window.__e2e.calls?.[id]?.events ?? null, id);
}

export function hangup(sdk, id) {
  return sdk.page.evaluate((id) => window.__e2e.calls[id].call.hangup(), id);
}

export function waitCallStatus(sdk, id, status) {
  return waitFor(async () => (await callEvents(sdk, id))?.includes(status), {
    what: `call ${id} status ${status}`, seen: () => callEvents(sdk, id),
  });
}

/** Inbound RTP of the call's peer connection (native getStats): {bytesReceived, packetsReceived}. */
export function callMediaFacts(sdk, id) {
  return sdk.page.evaluate(
    (id) =>
      new Promise((resolve) => {
        const facts = { bytesReceived: 0, packetsReceived: 0 };
        const timer = setTimeout(() => resolve({ ...facts, stats: 'timeout' }), 3000);
        try {
          window.__e2e.calls[id].call.getStats((raw) => {
            clearTimeout(timer);
            for (const r of raw['inbound-rtp'] || []) {
              facts.bytesReceived += r.bytesReceived || 0;
              facts.packetsReceived += r.packetsReceived || 0;
            }
            resolve(facts);
          }, true);
        } catch (e) {
          clearTimeout(timer);
          resolve({ ...facts, stats: String(e) });
        }
      }),
    id,
  );
}

/**
 * Records incoming calls: the session's INCOMING_CALL handler (it replaces the generic recorder
 * for that one status, and records it the same way) keeps each Call in window.__e2e.calls and
 * every CALL_STATUS it reaches.
 */
export function watchIncoming(sdk) {
  return sdk.page.evaluate(() => {
    const e2e = window.__e2e;
    e2e.calls = e2e.calls || {};
    e2e.incoming = [];
    const S = Flashphoner.constants.SESSION_STATUS;
    e2e.session.on(S.INCOMING_CALL, (call) => {
      e2e.events.push({ name: S.INCOMING_CALL, payload: { id: call.id(), caller: call.caller(), callee: call.callee() }, at: Date.now() });
      const rec = { call, events: [] };
      e2e.calls[call.id()] = rec;
      e2e.incoming.push(call.id());
      for (const status of new Set(Object.values(Flashphoner.constants.CALL_STATUS))) {
        call.on(status, () => rec.events.push(status));
      }
    });
  });
}

/** Waits for the n-th (1-based) incoming call; returns its id. */
export function waitIncoming(sdk, n = 1) {
  return waitFor(async () => (await sdk.page.evaluate(() => window.__e2e.incoming || []))[n - 1], {
    what: `incoming call #${n} in the page`, seen: () => sdk.events(),
  });
}

/** call.answer() with audio only. */
export function answerCall(sdk, id) {
  return sdk.page.evaluate((id) => {
    const display = document.createElement('div');
    document.body.appendChild(display);
    window.__e2e.calls[id].call.answer({ localVideoDisplay: display, remoteVideoDisplay: display, constraints: { audio: true, video: false } });
  }, id);
}
