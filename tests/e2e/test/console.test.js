// The console page callgate serves at http://<http_bind>/ (console/*, crates/server/src/console.rs),
// driven through its own buttons and fields in headless Chromium, as a person would (issue 13):
// two tabs register to the embedded registrar ([registrar], domain callgate.local) as 1001 and
// 1002 and call each other with the panel's "Video" ticked (its default): audio and video both
// ways (getStats inbound bytes of each kind rising in both tabs, each tab's remote <video> showing
// frames: videoWidth > 0, currentTime advancing), after the answer and after unhold; hold/unhold,
// DTMF, hangup; the streaming panel publishes in one tab and plays in the other with video
// frames decoded; the data panel's sendData; every step's hooks in the page's hook log (the
// server-sent events of /console/hooks shown in its table). Screenshots of each step go to
// tests/e2e/artifacts/ (not committed).
//
// The video is VP8 passed through callgate's SIP bridge (docs/media.md "Video in calls"); the
// codecs themselves are tested with the SDK's Phone Video demo (test/phone-video-demo.test.js).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SIP_TOML } from '../lib/calls.js';
import { e2eSuite } from '../lib/fixture.js';
import { show, sleep, waitFor } from '../lib/util.js';

const e2eTest = e2eSuite();
const ARTIFACTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'artifacts');
fs.mkdirSync(ARTIFACTS, { recursive: true });

/** One console tab: the page of an SdkPage (its own browser context) navigated to the console. */
class ConsoleTab {
  constructor(sdk, label) {
    this.sdk = sdk;
    this.page = sdk.page;
    this.label = label;
  }

  /** `feedOpens`: the hook log opens by itself (no admin token, an open REST API: loopback). */
  static async open(sdk, callgate, label, { feedOpens = true } = {}) {
    const tab = new ConsoleTab(sdk, label);
    await tab.page.setViewportSize({ width: 1280, height: 900 });
    await tab.page.goto(`${callgate.httpUrl}/`);
    await tab.page.waitForSelector('body[data-ready="true"]', { timeout: 10_000 });
    if (feedOpens) await tab.waitText('hookStatus', (t) => t === 'open', 'the hook log open');
    return tab;
  }

  text(id) {
    return this.page.textContent(`#${id}`);
  }

  /** Waits until #id's text satisfies `pred`; returns the text. */
  waitText(id, pred, what) {
    return waitFor(async () => {
      const t = (await this.text(id))?.trim();
      return pred(t) ? t : null;
    }, { what: `${this.label}: ${what || `#${id}`}`, seen: async () => ({ [id]: await this.text(id), events: await this.events() }) });
  }

  waitEnabled(id) {
    return waitFor(() => this.page.isEnabled(`#${id}`), { what: `${this.label}: #${id} enabled`, seen: () => this.events() });
  }

  /** What the page recorded (window.__console.events): every session, stream and call status. */
  events() {
    return this.page.evaluate(() => window.__console.events.map(({ kind, name, info }) => ({ kind, name, info })));
  }

  /** The hook records the page received on its hook log. */
  hooks() {
    return this.page.evaluate(() => window.__console.hooks.map((h) => ({ method: h.method, session: h.session, status: h.status, decision: h.decision, body: h.body })));
  }

  /** The method column of the hook log table, as shown. */
  hookRowMethods() {
    return this.page.$$eval('#hookRows tr', (rows) => rows.map((r) => r.children[2]?.textContent));
  }

  waitHook(method, pred = () => true) {
    return waitFor(async () => (await this.hooks()).find((h) => h.method === method && pred(h)), {
      what: `${this.label}: hook ${method} in the hook log`,
      seen: async () => (await this.hooks()).map((h) => `${h.method} ${h.status ?? ''} ${h.body?.status ?? ''}`),
    });
  }

  async connect({ login, password }) {
    // The SIP account fields are in a closed <details>: open it as a person would.
    await this.page.click('#connectPanel summary');
    await this.page.fill('#sipLogin', login);
    await this.page.fill('#sipPassword', password);
    await this.page.fill('#sipDomain', 'callgate.local');
    assert.ok(await this.page.isChecked('#sipRegister'), 'register on connect is ticked by default');
    await this.page.click('#connect');
    await this.waitText('sessionStatus', (t) => t === 'ESTABLISHED', 'session ESTABLISHED');
    await this.waitText('regStatus', (t) => t === 'REGISTERED', 'registration REGISTERED');
  }

  /** The call's RTP counters from its peer connection's native getStats: audio (`received`,
   * `sent`, `packetsReceived`) and video (`videoReceived`, `videoSent`). */
  callStats() {
    return this.page.evaluate(
      () =>
        new Promise((resolve) => {
          const facts = { received: 0, sent: 0, packetsReceived: 0, videoReceived: 0, videoSent: 0 };
          const call = window.__console.state.call;
          if (!call) return resolve({ ...facts, stats: 'no call' });
          const timer = setTimeout(() => resolve({ ...facts, stats: 'timeout' }), 3000);
          call.getStats((raw) => {
            clearTimeout(timer);
            for (const r of raw['inbound-rtp'] || []) {
              if (r.kind === 'audio') {
                facts.received += r.bytesReceived || 0;
                facts.packetsReceived += r.packetsReceived || 0;
              } else if (r.kind === 'video') facts.videoReceived += r.bytesReceived || 0;
            }
            for (const r of raw['outbound-rtp'] || []) {
              if (r.kind === 'audio') facts.sent += r.bytesSent || 0;
              else if (r.kind === 'video') facts.videoSent += r.bytesSent || 0;
            }
            resolve(facts);
          }, true);
        }),
    );
  }

  /** The <video> the SDK made in the phone panel's remote display (#callRemote). */
  callRemoteVideo() {
    return this.page.evaluate(() => {
      const v = document.querySelector('#callRemote video');
      return v ? { width: v.videoWidth, height: v.videoHeight, time: v.currentTime, paused: v.paused } : null;
    });
  }

  /** The player's inbound RTP (native getStats) and its <video> in the panel's display. */
  playerStats() {
    return this.page.evaluate(
      () =>
        new Promise((resolve) => {
          const v = document.querySelector('#remoteVideo video');
          const facts = { videoWidth: v?.videoWidth ?? 0, videoHeight: v?.videoHeight ?? 0, framesDecoded: 0, bytesReceived: 0, audioPackets: 0 };
          const player = window.__console.state.player;
          if (!player) return resolve({ ...facts, stats: 'no player' });
          const timer = setTimeout(() => resolve({ ...facts, stats: 'timeout' }), 3000);
          player.getStats((raw) => {
            clearTimeout(timer);
            for (const r of raw['inbound-rtp'] || []) {
              facts.bytesReceived += r.bytesReceived || 0;
              if (r.kind === 'video') facts.framesDecoded += r.framesDecoded || 0;
              if (r.kind === 'audio') facts.audioPackets += r.packetsReceived || 0;
            }
            resolve(facts);
          }, true);
        }),
    );
  }

  shot(name) {
    return this.page.screenshot({ path: path.join(ARTIFACTS, `console-${name}.png`), fullPage: true });
  }
}

/** The page's browser console errors (the page must load and run without any). */
function pageErrors(tab) {
  return tab.sdk.consoleLines.filter((l) => l.startsWith('[error]') || l.startsWith('[pageerror]'));
}

/** Two tabs' audio: the inbound bytes of each rise over a second, and so do the outbound. */
async function assertAudioBothWays(a, b, when) {
  const first = {};
  for (const tab of [a, b]) {
    first[tab.label] = await waitFor(async () => {
      const f = await tab.callStats();
      return f.received > 0 && f.sent > 0 ? f : null;
    }, { what: `${tab.label}: audio bytes received and sent (${when})`, seen: () => tab.callStats() });
  }
  await sleep(1000);
  for (const tab of [a, b]) {
    const later = await tab.callStats();
    const before = first[tab.label];
    assert.ok(later.received > before.received, `${tab.label} (${when}): inbound audio bytes rise: ${show([before, later])}`);
    assert.ok(later.sent > before.sent, `${tab.label} (${when}): outbound audio bytes rise: ${show([before, later])}`);
  }
}

/** Two tabs' video: the inbound video bytes of each rise over a second (and the outbound), and
 * each tab's remote <video> in the phone panel shows frames (videoWidth > 0) and plays on
 * (currentTime advancing). */
async function assertVideoBothWays(a, b, when) {
  const first = {};
  for (const tab of [a, b]) {
    const stats = await waitFor(async () => {
      const f = await tab.callStats();
      return f.videoReceived > 0 && f.videoSent > 0 ? f : null;
    }, { what: `${tab.label}: video bytes received and sent (${when})`, seen: () => tab.callStats() });
    const video = await waitFor(async () => {
      const v = await tab.callRemoteVideo();
      return v && v.width > 0 && v.time > 0 ? v : null;
    }, { what: `${tab.label}: remote video frames in #callRemote (${when})`, seen: async () => ({ video: await tab.callRemoteVideo(), stats: await tab.callStats() }) });
    first[tab.label] = { stats, video };
  }
  await sleep(1500);
  for (const tab of [a, b]) {
    const later = { stats: await tab.callStats(), video: await tab.callRemoteVideo() };
    const before = first[tab.label];
    assert.ok(later.stats.videoReceived > before.stats.videoReceived, `${tab.label} (${when}): inbound video bytes rise: ${show([before, later])}`);
    assert.ok(later.stats.videoSent > before.stats.videoSent, `${tab.label} (${when}): outbound video bytes rise: ${show([before, later])}`);
    assert.ok(later.video.width > 0 && later.video.time > before.video.time + 0.5, `${tab.label} (${when}): the remote video plays on: ${show([before, later])}`);
  }
}

e2eTest('phone panel: 1001 and 1002 register to the embedded registrar, call with video, audio and video both ways, hold/unhold, DTMF, hangup; hooks in the log', async (env) => {
  const { callgate } = env;
  const a = await ConsoleTab.open(env.sdk, callgate, 'tab 1001');
  const b = await ConsoleTab.open(await env.newPage(), callgate, 'tab 1002');
  assert.match(await a.page.inputValue('#server'), new RegExp(`^ws://127\\.0\\.0\\.1:${callgate.wsPort}$`), 'the page proposes the server WebSocket');
  assert.deepEqual([...pageErrors(a), ...pageErrors(b)], [], 'the page loads without console errors');

  await a.connect({ login: '1001', password: 'pw1001' });
  await b.connect({ login: '1002', password: 'pw1002' });
  await a.shot('1-registered');

  // 1001 calls 1002 through the registrar; 1002 answers from its phone panel.
  await a.page.fill('#callee', '1002');
  assert.doesNotMatch(await a.text('phonePanel'), /audio only/, 'the panel no longer says calls are audio only');
  for (const tab of [a, b]) assert.ok(await tab.page.isChecked('#callVideo'), `${tab.label}: "Video" is ticked by default`);
  await a.page.click('#call');
  await b.waitEnabled('answer');
  assert.match(await b.text('callInfo') + (await b.events()).map((e) => e.info).join(' '), /1001/, 'the callee sees the caller');
  await b.page.click('#answer');
  await a.waitText('callStatus', (t) => t === 'ESTABLISHED', 'call ESTABLISHED');
  await b.waitText('callStatus', (t) => t === 'ESTABLISHED', 'call ESTABLISHED');
  await assertAudioBothWays(a, b, 'established');
  await assertVideoBothWays(a, b, 'established');
  // The caller's call offered video (the `call` hook's body, as the page's hook log has it).
  const callHook = await a.waitHook('call');
  assert.equal(callHook.body.hasVideo, true, show(callHook.body));
  await a.shot('2-call-established');
  await b.shot('2-call-established-callee');

  // Hold and unhold from the caller's panel.
  await a.page.click('#hold');
  await a.waitText('callStatus', (t) => t === 'HOLD', 'call HOLD');
  // callgate tells the held side too (the re-INVITE's sendonly: "SIP peer hold state").
  await b.waitText('callStatus', (t) => t === 'HOLD', 'call HOLD (held by the peer)');
  assert.equal(await b.text('callInfo'), 'held by the peer');
  assert.ok(await b.page.isDisabled('#unhold'), 'only the side that held can unhold');
  await a.waitEnabled('unhold');
  await a.shot('3-hold');
  await a.page.click('#unhold');
  await a.waitText('callStatus', (t) => t === 'ESTABLISHED', 'call ESTABLISHED after unhold');
  await b.waitText('callStatus', (t) => t === 'ESTABLISHED', 'call ESTABLISHED after the peer unheld');
  await assertAudioBothWays(a, b, 'after unhold');
  await assertVideoBothWays(a, b, 'after unhold');
  await a.shot('3-unhold');
  await b.shot('3-unhold-callee');

  // DTMF from the caller's panel.
  await a.page.fill('#dtmf', '5');
  await a.page.click('#sendDtmf');
  const dtmf = await a.waitHook('sendDtmf');
  assert.equal(dtmf.body.dtmf, '5', show(dtmf.body));

  // Hangup from the callee: both end FINISH.
  await b.page.click('#hangup');
  await a.waitText('callStatus', (t) => t === 'FINISH', 'call FINISH');
  await b.waitText('callStatus', (t) => t === 'FINISH', 'call FINISH');
  await a.waitEnabled('call');
  await a.shot('4-finished');

  // The call statuses each page went through.
  const statuses = async (tab) => (await tab.events()).filter((e) => e.kind === 'call' && e.name !== 'PENDING').map((e) => e.name);
  assert.deepEqual(await statuses(a), ['TRYING', 'RING', 'ESTABLISHED', 'HOLD', 'ESTABLISHED', 'FINISH'], show(await a.events()));
  assert.deepEqual(await statuses(b), ['INCOMING', 'RING', 'ESTABLISHED', 'HOLD', 'ESTABLISHED', 'FINISH'], show(await b.events()));

  // The hook log (node-wide, in both tabs) shows each hook of the story.
  await a.waitHook('CallStatusEvent', (h) => h.body?.status === 'FINISH');
  for (const tab of [a, b]) {
    const hooks = await tab.hooks();
    const methods = new Set(hooks.map((h) => h.method));
    for (const m of ['connect', 'ConnectionStatusEvent', 'RegistrationStatusEvent', 'call', 'OnCallEvent', 'answer', 'CallStatusEvent', 'hold', 'unhold', 'sendDtmf', 'hangup']) {
      assert.ok(methods.has(m), `${tab.label}: hook ${m} in the hook log: ${show([...methods])}`);
    }
    const logins = hooks.filter((h) => h.method === 'RegistrationStatusEvent' && h.body?.status === 'REGISTERED').map((h) => h.body.sipLogin);
    assert.deepEqual(logins.sort(), ['1001', '1002'], show(hooks.filter((h) => h.method === 'RegistrationStatusEvent')));
    assert.ok(hooks.every((h) => h.decision !== 'error' && h.decision !== 'refused'), show(hooks.filter((h) => ['error', 'refused'].includes(h.decision))));
    // The table shows them too (one row per record).
    const rows = await tab.hookRowMethods();
    assert.equal(rows.length, hooks.length, 'one table row per hook record');
    // The session column tells sessions apart (the uuid's first group, not "/127.0.0").
    const shown = await tab.page.$$eval('#hookRows tr', (trs) => trs.map((r) => r.children[3].textContent));
    assert.ok(shown.every((s) => /^[0-9a-f]{8}$/.test(s)), show(shown.slice(0, 5)));
    assert.equal(new Set(shown).size, 2, `two sessions in the log: ${show([...new Set(shown)])}`);
    for (const m of ['call', 'answer', 'hold', 'unhold', 'sendDtmf', 'hangup']) assert.ok(rows.includes(m), `${tab.label}: row ${m}`);
    // Passwords are masked in what the log shows.
    assert.ok(!JSON.stringify(hooks).includes('pw1001') && !JSON.stringify(hooks).includes('pw1002'), 'no password in the hook log');
  }
  // A row opens its body.
  await a.page.click('#hookRows tr:has(td:text-is("call"))');
  assert.match(await a.text('hookDetail'), /"callee": "1002"/);
  await a.shot('5-hook-log');
  assert.deepEqual([...pageErrors(a), ...pageErrors(b)], [], 'no console errors along the way');
}, { timeout: 90_000, callgate: { extraToml: SIP_TOML } });

e2eTest('streaming panel: publish the camera in one tab, play it in another with frames decoded; sendData; hooks in the log', async (env) => {
  const { callgate } = env;
  const a = await ConsoleTab.open(env.sdk, callgate, 'publisher tab');
  const b = await ConsoleTab.open(await env.newPage(), callgate, 'player tab');
  // No SIP account: the streaming and data panels need none.
  for (const tab of [a, b]) {
    await tab.page.click('#connect');
    await tab.waitText('sessionStatus', (t) => t === 'ESTABLISHED', 'session ESTABLISHED');
    await tab.waitEnabled('publish');
  }
  const name = `console${Date.now()}`;
  await a.page.fill('#publishName', name);
  await a.page.click('#publish');
  await a.waitText('publishStatus', (t) => t.startsWith('PUBLISHING'), 'PUBLISHING');
  assert.ok(await a.page.isDisabled('#publish'), 'one publication at a time');

  await b.page.fill('#playName', name);
  await b.page.click('#play');
  await b.waitText('playStatus', (t) => t.startsWith('PLAYING'), 'PLAYING');
  const first = await waitFor(async () => {
    const f = await b.playerStats();
    return f.videoWidth > 0 && f.framesDecoded > 0 ? f : null;
  }, { what: 'video frames decoded in the player tab', seen: () => b.playerStats() });
  await sleep(1000);
  const later = await b.playerStats();
  assert.ok(later.framesDecoded > first.framesDecoded, `decoded frames rise: ${show([first, later])}`);
  assert.ok(later.bytesReceived > first.bytesReceived, `inbound bytes rise: ${show([first, later])}`);
  await a.shot('6-publishing');
  await b.shot('6-playing');

  // The data panel: sendData is accepted (EchoApp answers OnDataEvent 200).
  await a.page.click('#sendData');
  await a.waitText('dataLog', (t) => /sent: \{"hello":"callgate"\} \(accepted\)/.test(t), 'sendData accepted');
  await a.waitHook('OnDataEvent', (h) => h.body?.payload?.hello === 'callgate');

  // Stop: the publisher's Stop unpublishes, the player stops.
  await a.page.click('#unpublish');
  await a.waitText('publishStatus', (t) => t.startsWith('UNPUBLISHED'), 'UNPUBLISHED');
  await b.waitText('playStatus', (t) => t.startsWith('STOPPED'), 'player STOPPED');
  await a.waitEnabled('publish');
  await b.waitEnabled('play');
  assert.match(await b.text('streamLog'), new RegExp(`play ${name}: PLAYING`));

  await a.waitHook('StreamStatusEvent', (h) => h.body?.status === 'UNPUBLISHED');
  for (const tab of [a, b]) {
    const methods = new Set((await tab.hooks()).map((h) => h.method));
    for (const m of ['connect', 'publishStream', 'playStream', 'StreamStatusEvent', 'OnDataEvent', 'unPublishStream']) {
      assert.ok(methods.has(m), `${tab.label}: hook ${m} in the hook log: ${show([...methods])}`);
    }
  }
  await b.shot('7-stream-hooks');

  // Disconnect: the session ends, the panels wait for the next connect.
  await a.page.click('#disconnect');
  await a.waitText('sessionStatus', (t) => t === 'DISCONNECTED', 'session DISCONNECTED');
  await a.waitEnabled('connect');
  for (const id of ['publish', 'play', 'sendData', 'call', 'disconnect']) assert.ok(await a.page.isDisabled(`#${id}`), `#${id} disabled once disconnected`);
  assert.deepEqual([...pageErrors(a), ...pageErrors(b)], [], 'no console errors along the way');
}, { timeout: 90_000 });

const ADMIN_TOKEN = 'console-e2e-token';

e2eTest('hook log behind [console] admin_token: closed until the token is typed, a wrong one refused with the reason, the right one streams hooks', async (env) => {
  const tab = await ConsoleTab.open(env.sdk, env.callgate, 'tab', { feedOpens: false });
  assert.match(await tab.text('hookAccess'), /needs the admin token/);
  assert.equal(await tab.text('hookStatus'), 'closed', 'no feed without a token');
  await tab.page.fill('#hookToken', 'not-the-token');
  await tab.page.click('#hookOpen');
  await tab.waitText('hookStatus', (t) => t === 'refused: 401 wrong console token', 'the refusal and its reason');
  await tab.waitEnabled('hookOpen');
  await tab.page.fill('#hookToken', ADMIN_TOKEN);
  await tab.page.click('#hookOpen');
  await tab.waitText('hookStatus', (t) => t === 'open', 'the hook log open with the token');
  await tab.page.click('#connect');
  await tab.waitText('sessionStatus', (t) => t === 'ESTABLISHED', 'session ESTABLISHED');
  await tab.waitHook('connect');
  await tab.waitHook('ConnectionStatusEvent');
  await tab.shot('8-token-hook-log');
  await tab.page.click('#hookClose');
  assert.equal(await tab.text('hookStatus'), 'closed');
}, { callgate: { extraToml: `[console]\nadmin_token = "${ADMIN_TOKEN}"\n` } });
