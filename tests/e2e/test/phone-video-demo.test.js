// The SDK's own Phone Video demo page (examples/demo/sip/phone-video, unmodified) against
// callgate: two pages register to the embedded registrar ([registrar], domain callgate.local)
// as 1001 and 1002 through the page's own form, 1001 calls 1002 with the page's Call button
// (camera and microphone: Chromium's fake devices), 1002 answers with its Answer button, and
// both pages show the other's video (the <video> in #remoteVideo: videoWidth > 0, currentTime
// advancing): browser A -> callgate -> registrar -> callgate -> browser B and back, video passed
// through callgate's SIP bridge (docs/media.md, "Video in calls"). Then hold and unhold with the
// page's Hold button (both m-lines re-offered) and the video flowing again, and hangup.
// The demo page has no way to choose the codec it offers (its "SDP find/replace" fields rewrite
// the SDP the page receives, not its offer), so it calls with Chromium's first choice, VP8; the
// H.264 test has an SDK page call with `stripCodecs: 'VP8,VP9,AV1'` (the SDK driven directly,
// `hasVideo` from its camera) and the unmodified demo page answer it.
import assert from 'node:assert/strict';
import { SIP_TOML, startCall, waitCallStatus } from '../lib/calls.js';
import { e2eSuite } from '../lib/fixture.js';
import { startDemoServer } from '../lib/demo-server.js';
import { show, sleep, waitFor } from '../lib/util.js';

const e2eTest = e2eSuite();
const PAGE = '/examples/demo/sip/phone-video/phone-video.html';

/** One demo page: the page of an SdkPage (its own browser context) navigated to the demo. */
async function openDemo(sdk, demo, label) {
  const page = sdk.page;
  await page.goto(`${demo.url}${PAGE}`);
  // The page loads its fieldset and controls with $.load, then enables Connect.
  await page.waitForSelector('#connectBtn:not([disabled])', { timeout: 15_000 });
  await page.waitForFunction(() => document.querySelector('#connectBtn').textContent.trim() === 'Connect', null, { timeout: 15_000 });
  return { page, label, sdk };
}

function text(tab, sel) {
  return tab.page.evaluate((s) => document.querySelector(s)?.textContent?.trim() ?? null, sel);
}

function waitText(tab, sel, want) {
  return waitFor(async () => ((await text(tab, sel)) === want ? want : null), {
    what: `${tab.label}: ${sel} = ${want}`,
    timeout: 20_000,
    seen: async () => ({ [sel]: await text(tab, sel), console: tab.sdk.consoleLines.slice(-15) }),
  });
}

/** Fills the page's connection form as a person would and connects; waits for REGISTERED. */
async function register(tab, callgate, user) {
  const { page } = tab;
  await page.fill('#urlServer', callgate.wsUrl);
  await page.fill('#sipLogin', user);
  await page.fill('#sipAuthenticationName', user);
  await page.fill('#sipPassword', `pw${user}`);
  await page.fill('#sipDomain', 'callgate.local');
  // The page requires every field; the registrar's own domain as the proxy means "no proxy".
  await page.fill('#sipOutboundProxy', 'callgate.local');
  await page.fill('#sipPort', '5060');
  await page.click('#connectBtn');
  await waitText(tab, '#regStatus', 'REGISTERED');
}

/** The remote <video> the SDK made in #remoteVideo. */
function remoteVideo(tab) {
  return tab.page.evaluate(() => {
    const v = document.querySelector('#remoteVideo video');
    return v ? { width: v.videoWidth, height: v.videoHeight, time: v.currentTime, paused: v.paused } : null;
  });
}

/** The remote video shows frames and plays on: videoWidth > 0 and currentTime advancing. */
async function assertRemoteVideoPlays(tab, when) {
  const first = await waitFor(async () => {
    const v = await remoteVideo(tab);
    return v && v.width > 0 && v.time > 0 ? v : null;
  }, { what: `${tab.label}: remote video frames (${when})`, timeout: 20_000, seen: async () => ({ video: await remoteVideo(tab), rtp: await videoRtp(tab) }) });
  await sleep(1500);
  const later = await remoteVideo(tab);
  assert.ok(later.width > 0 && later.time > first.time + 0.5, `${tab.label} (${when}): remote video plays on: ${show([first, later])}`);
  return later;
}

/** The frames the remote <video> has shown (getVideoPlaybackQuality). */
function inboundVideo(tab) {
  return tab.page.evaluate(() => {
    const q = document.querySelector('#remoteVideo video')?.getVideoPlaybackQuality?.();
    return { totalFrames: q?.totalVideoFrames ?? 0 };
  });
}

/** The call's video RTP counters (inbound and outbound), for failure reports. */
function videoRtp(tab) {
  return tab.page.evaluate(
    () =>
      new Promise((resolve) => {
        const pick = (r, keys) => Object.fromEntries(keys.filter((k) => k in r).map((k) => [k, r[k]]));
        // eslint-disable-next-line no-undef
        currentCall.getStats((raw) => {
          const codecs = Object.fromEntries((raw.codec || []).map((c) => [c.id, `${c.mimeType} ${c.payloadType} ${c.sdpFmtpLine || ''}`]));
          resolve({
            inbound: (raw['inbound-rtp'] || []).filter((r) => r.kind === 'video').map((r) => ({ ...pick(r, ['bytesReceived', 'packetsReceived', 'framesDecoded', 'keyFramesDecoded', 'pliCount', 'firCount', 'nackCount', 'packetsLost']), codec: codecs[r.codecId] })),
            outbound: (raw['outbound-rtp'] || []).filter((r) => r.kind === 'video').map((r) => ({ ...pick(r, ['bytesSent', 'packetsSent', 'framesEncoded', 'keyFramesEncoded', 'pliCount', 'firCount', 'encoderImplementation']), codec: codecs[r.codecId] })),
          });
        }, true);
      }),
  );
}

/** The codec of the call's inbound video (the SDK's raw getStats of the page's currentCall). */
function inboundCodec(tab) {
  return tab.page.evaluate(
    () =>
      new Promise((resolve) => {
        // The page's own global (phone-video.js: `var currentCall`).
        // eslint-disable-next-line no-undef
        currentCall.getStats((raw) => {
          const inbound = (raw['inbound-rtp'] || []).find((r) => r.kind === 'video');
          const c = (raw.codec || []).find((x) => x.id === inbound?.codecId);
          resolve(c?.mimeType || null);
        }, true);
      }),
  );
}

e2eTest(
  `Phone Video demo: 1001 calls 1002 through the embedded registrar, both pages show the other's video; hold, unhold, hangup`,
  async ({ callgate, sdk, newPage }) => {
    const demo = await startDemoServer({ recordsTo: callgate.httpUrl });
    try {
      const a = await openDemo(sdk, demo, 'page 1001');
      const b = await openDemo(await newPage(), demo, 'page 1002');
      await register(a, callgate, '1001');
      await register(b, callgate, '1002');

      await a.page.fill('#callee', '1002');
      await a.page.click('#callBtn');
      await b.page.waitForSelector('#answerBtn:visible:not([disabled])', { timeout: 20_000 });
      assert.match(await text(b, '#incomingCallAlert'), /1001/, 'the callee sees the caller');
      await b.page.click('#answerBtn');
      await waitText(a, '#callStatus', 'ESTABLISHED');
      await waitText(b, '#callStatus', 'ESTABLISHED');

      const va = await assertRemoteVideoPlays(a, 'established');
      const vb = await assertRemoteVideoPlays(b, 'established');
      // The fake camera at the page's 320x240 send size, passed through untouched.
      assert.ok(va.width >= 160 && vb.width >= 160, show({ va, vb }));
      const framesA = (await inboundVideo(a)).totalFrames;
      assert.ok(framesA > 10, `page 1001 decoded ${framesA} frames`);
      assert.equal(await inboundCodec(a), 'video/VP8', 'page 1001 receives the codec it offered first');
      assert.equal(await inboundCodec(b), 'video/VP8', 'page 1002 receives the same codec, passed through');

      // Hold from the caller's Hold button (a re-INVITE with both m-lines sendonly), then unhold.
      await a.page.waitForSelector('#holdBtn:not([disabled])', { timeout: 10_000 });
      await a.page.click('#holdBtn');
      await a.page.waitForFunction(
        () => document.querySelector('#holdBtn').textContent.trim() === 'Unhold' && !document.querySelector('#holdBtn').disabled,
        null,
        { timeout: 15_000 },
      );
      await a.page.click('#holdBtn');
      await a.page.waitForFunction(
        () => document.querySelector('#holdBtn').textContent.trim() === 'Hold' && !document.querySelector('#holdBtn').disabled,
        null,
        { timeout: 15_000 },
      );
      await waitText(a, '#callStatus', 'ESTABLISHED');
      await assertRemoteVideoPlays(a, 'after unhold');
      await assertRemoteVideoPlays(b, 'after unhold');

      // Hangup from the caller's button (it reads "Hangup" during the call).
      assert.equal(await text(a, '#callBtn'), 'Hangup');
      await a.page.click('#callBtn');
      await waitText(a, '#callStatus', 'FINISH');
      await waitText(b, '#callStatus', 'FINISH');
      const errors = [...a.sdk.consoleLines, ...b.sdk.consoleLines].filter((l) => l.startsWith('[pageerror]'));
      assert.deepEqual(errors, [], 'no page errors');
    } finally {
      await demo.close();
    }
  },
  { timeout: 120_000, callgate: { extraToml: SIP_TOML } },
);

/** An SDK page's call (lib/calls.js startCall): inbound video frames decoded and its codec. */
function sdkInboundVideo(sdk, id) {
  return sdk.page.evaluate(
    (id) =>
      new Promise((resolve) => {
        window.__e2e.calls[id].call.getStats((raw) => {
          const inbound = (raw['inbound-rtp'] || []).find((r) => r.kind === 'video');
          const c = (raw.codec || []).find((x) => x.id === inbound?.codecId);
          resolve({ framesDecoded: inbound?.framesDecoded ?? 0, width: inbound?.frameWidth ?? 0, codec: c?.mimeType || null });
        }, true);
      }),
    id,
  );
}

e2eTest(
  'H.264: an SDK page (VP8 stripped) calls the Phone Video demo page through the embedded registrar; both decode H.264 video',
  async ({ callgate, sdk, newPage }) => {
    const demo = await startDemoServer({ recordsTo: callgate.httpUrl });
    try {
      await sdk.createSession({
        urlServer: callgate.wsUrl,
        sipOptions: { login: '1001', authenticationName: '1001', password: 'pw1001', domain: 'callgate.local', port: '5060', registerRequired: true },
      });
      await sdk.waitForEvent('REGISTERED');
      const b = await openDemo(await newPage(), demo, 'page 1002');
      await register(b, callgate, '1002');

      const id = await startCall(sdk, '1002', { constraints: { audio: true, video: true }, stripCodecs: 'VP8,VP9,AV1' });
      await b.page.waitForSelector('#answerBtn:visible:not([disabled])', { timeout: 20_000 });
      await b.page.click('#answerBtn');
      await waitText(b, '#callStatus', 'ESTABLISHED');
      await waitCallStatus(sdk, id, 'ESTABLISHED');

      await assertRemoteVideoPlays(b, 'established');
      assert.equal(await inboundCodec(b), 'video/H264', 'the demo page receives the caller\'s H.264, passed through');
      const first = await waitFor(async () => {
        const v = await sdkInboundVideo(sdk, id);
        return v.framesDecoded > 10 && v.width > 0 ? v : null;
      }, { what: 'the caller decoding the demo page\'s video', timeout: 20_000, seen: () => sdkInboundVideo(sdk, id) });
      assert.equal(first.codec, 'video/H264', 'the demo page answers with the offered H.264');
      await sleep(1000);
      const later = await sdkInboundVideo(sdk, id);
      assert.ok(later.framesDecoded > first.framesDecoded, `the caller keeps decoding: ${show([first, later])}`);

      await b.page.click('#hangupBtn'); // the callee hangs up from the demo page
      await waitCallStatus(sdk, id, 'FINISH');
    } finally {
      await demo.close();
    }
  },
  { timeout: 120_000, callgate: { extraToml: SIP_TOML } },
);
