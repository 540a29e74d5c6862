// HLS output (docs/media.md "HLS output"): an SDK page publishes the fake camera as H.264
// (`stripCodecs: 'VP8,VP9,AV1'`: HLS carries H.264 only) and hls.js (npm `hls.js`, served from
// node_modules) in a second page plays http://127.0.0.1:<http port>/<stream>/index.m3u8 in a
// <video>: Chromium's MSE decodes the fMP4 (frames rising, currentTime advancing). The playHLS hook
// goes to the recording backend (`[hls] app_key`); a refusal there is HTTP 403 with its reason.
import assert from 'node:assert/strict';
import { reply } from '../lib/backend.js';
import { e2eSuite } from '../lib/fixture.js';
import { hlsFacts, loadHlsJs, playHls, stopHls } from '../lib/hls.js';
import { establish, publish, waitStatus } from '../lib/streams.js';
import { show, sleep, waitFor } from '../lib/util.js';

const e2eTest = e2eSuite();

// The playHLS hook goes to the recording backend; a refusal there refuses the player (FAIL).
const hlsOptions = { extraToml: '[hls]\nenabled = true\napp_key = "backendApp"\nrest_on_error = "FAIL"\n' };

/** Publisher page (env.sdk) publishing `name` as H.264; resolves once PUBLISHING. */
async function publishingH264(env, name) {
  await establish(env.sdk, env.callgate, { appKey: 'backendApp' });
  const id = await publish(env.sdk, name, { stripCodecs: 'VP8,VP9,AV1' });
  await waitStatus(env.sdk, id, 'PUBLISHING');
  const offer = (await env.backend.waitForHook('publishStream', (r) => r.body?.name === name)).body.sdp;
  assert.ok(!/VP8\/90000/.test(offer) && /H264\/90000/.test(offer), `the publisher offers only H.264 video: ${offer}`);
  return id;
}

/** A second page (own browser context) with hls.js loaded; MSE must take H.264 and Opus in MP4. */
async function hlsPage(env) {
  const page = await env.newPage();
  const caps = await loadHlsJs(page);
  assert.deepEqual({ supported: caps.supported, avc1: caps.avc1, opus: caps.opus }, { supported: true, avc1: true, opus: true }, show(caps));
  return page;
}

e2eTest('hls.js in Chromium plays the HLS output of an H.264 stream published by an SDK page; one playHLS hook for the player', async (env) => {
  const { callgate, backend } = env;
  await publishingH264(env, 'hls1');
  const viewer = await hlsPage(env);
  const url = `${callgate.httpUrl}/hls1/index.m3u8`;
  await playHls(viewer, 'hls1-player', url);

  // Real decoding: a picture, frames counted by the <video>, playback under way. Then it plays
  // on past the first segment (the server keeps cutting segments and parts, hls.js keeps
  // appending them): 2 s more of media time and 40 more frames. Waited for rather than read 2 s
  // later: hls.js 1.7.4 sometimes stalls for seconds at a segment boundary.
  const facts = () => hlsFacts(viewer, 'hls1-player');
  const fatal = (f) => f?.errors.find((e) => e.fatal);
  const first = await waitFor(async () => {
    const f = await facts();
    return f && (fatal(f) || (f.videoWidth > 0 && f.totalVideoFrames > 0 && f.currentTime > 0)) ? f : null;
  }, { what: 'hls.js playing the stream (videoWidth, decoded frames, currentTime > 0)', seen: facts, timeout: 30_000 });
  assert.equal(fatal(first), undefined, `hls.js fatal error: ${show(first)}`);
  const later = await waitFor(async () => {
    const f = await facts();
    const on = f.currentTime > Math.max(3, first.currentTime + 2) && f.totalVideoFrames > first.totalVideoFrames + 40;
    return fatal(f) || on ? f : null;
  }, { what: `playback going on from ${show({ currentTime: first.currentTime, totalVideoFrames: first.totalVideoFrames })}`, seen: facts, timeout: 25_000 });
  assert.equal(fatal(later), undefined, `hls.js fatal error: ${show(later)}`);
  assert.ok(later.videoWidth > 0 && later.videoHeight > 0, show(later));
  assert.equal(later.mediaError, null, show(later));
  const level = later.events.find((e) => e.event === 'LEVEL_LOADED');
  assert.equal(level?.live, true, `a live playlist: ${show(later.events)}`);

  // The playlist as served: LL-HLS, fMP4, readable from any origin.
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('access-control-allow-origin'), '*');
  assert.match(res.headers.get('content-type'), /mpegurl/i);
  const m3u8 = await res.text();
  assert.match(m3u8, /^#EXTM3U/);
  assert.match(m3u8, /#EXT-X-MAP:URI="init\.mp4"/, m3u8);
  assert.match(m3u8, /#EXT-X-PART:/, m3u8);

  // The player's first request ran playHLS at the backend, once (the decision is kept).
  const hook = await backend.waitForHook('playHLS', (r) => r.body?.name === 'hls1');
  assert.equal(hook.body.appKey, 'backendApp');
  assert.equal(hook.body.mediaProvider, 'HLS');
  assert.equal(hook.body.clientIP, '127.0.0.1');
  assert.equal(hook.body.published, false);
  assert.equal(backend.hooks('playHLS').length, 1, backend.describe());
  await stopHls(viewer, 'hls1-player');
}, { timeout: 90_000, callgate: hlsOptions });

e2eTest('playHLS refused by the backend -> 403 with its reason; hls.js on the page gets a fatal network error', async (env) => {
  const { callgate, backend } = env;
  backend.on('playHLS', (r) => (r.body?.name === 'secret' ? reply.json(403, { status: 403, reason: 'Viewer not allowed' }) : reply.mirror(r)));
  // Published and H.264, so only the hook stands between a player and the stream.
  await publishingH264(env, 'secret');

  const res = await fetch(`${callgate.httpUrl}/secret/index.m3u8`);
  assert.equal(res.status, 403);
  assert.equal(await res.text(), 'Viewer not allowed');
  assert.equal(res.headers.get('access-control-allow-origin'), '*');
  const hook = await backend.waitForHook('playHLS', (r) => r.body?.name === 'secret');
  assert.equal(hook.body.mediaProvider, 'HLS');

  const viewer = await hlsPage(env);
  await playHls(viewer, 'secret-player', `${callgate.httpUrl}/secret/index.m3u8`);
  const facts = () => hlsFacts(viewer, 'secret-player');
  const fatal = await waitFor(async () => (await facts())?.errors.find((e) => e.fatal), {
    what: 'a fatal hls.js error for the refused playlist',
    seen: facts,
    timeout: 20_000,
  });
  assert.equal(fatal.type, 'networkError', show(fatal));
  assert.equal(fatal.details, 'manifestLoadError', show(fatal));
  assert.equal(fatal.code, 403, show(fatal));
  const f = await facts();
  assert.equal(f.totalVideoFrames, 0, show(f));
  assert.equal(f.videoWidth, 0, show(f));
}, { timeout: 60_000, callgate: hlsOptions });
