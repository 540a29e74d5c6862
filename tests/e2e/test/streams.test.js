// Streams with the official SDK: publish, play with real media, unpublish, failures, stream
// events, availability, keep-alive. Publisher and player are separate sessions in separate pages.
import assert from 'node:assert/strict';
import { reply } from '../lib/backend.js';
import { e2eSuite } from '../lib/fixture.js';
import {
  available,
  establish,
  mediaFacts,
  play,
  publish,
  sendStreamData,
  stopStream,
  streamEvents,
  waitStatus,
  waitStreamEvent,
} from '../lib/streams.js';
import { show, sleep, waitFor } from '../lib/util.js';

const e2eTest = e2eSuite();

/** Publisher page (env.sdk) publishing `name`; resolves once PUBLISHING. */
async function publishing(env, name, appKey = 'backendApp') {
  await establish(env.sdk, env.callgate, { appKey });
  const id = await publish(env.sdk, name);
  await waitStatus(env.sdk, id, 'PUBLISHING');
  return id;
}

async function playerPage(env, appKey = 'backendApp') {
  const page = await env.newPage();
  await establish(page, env.callgate, { appKey });
  return page;
}

e2eTest('publish -> PUBLISHING; play in a second session -> PLAYING with real media; unpublish -> player STOPPED "Stopped by publisher stop"', async (env) => {
  const { sdk, backend, callgate } = env;
  const pubId = await publishing(env, 'cam1');
  const pubEvents = (await streamEvents(sdk, pubId)).events.map((e) => e.status);
  assert.deepEqual(pubEvents, ['PUBLISHING'], `publisher statuses: ${show(pubEvents)}`);
  const hook = await backend.waitForHook('publishStream');
  assert.equal(hook.body.name, 'cam1');
  assert.equal(hook.body.mediaSessionId, pubId);
  assert.match(hook.body.sdp, /^v=0/, 'the backend gets the offer');

  const viewer = await playerPage(env);
  const playId = await play(viewer, 'cam1');
  await waitStatus(viewer, playId, 'PLAYING');

  // The page really receives media: decoded video and inbound RTP bytes that keep rising.
  const first = await waitFor(async () => {
    const f = await mediaFacts(viewer, playId);
    return f.videoWidth > 0 && f.bytesReceived > 0 ? f : null;
  }, { what: 'videoWidth > 0 and inbound RTP bytes on the player', seen: () => mediaFacts(viewer, playId) });
  await sleep(1000);
  const later = await mediaFacts(viewer, playId);
  assert.ok(later.bytesReceived > first.bytesReceived, `inbound bytes rise: ${show([first, later])}`);
  assert.ok(later.videoWidth > 0 && later.videoHeight > 0, show(later));
  // Both tracks are forwarded and decoded: audio packets and decoded (not concealed) samples,
  // decoded video frames, all rising.
  assert.ok(later.audioPackets > first.audioPackets, `inbound audio packets rise: ${show([first, later])}`);
  assert.ok(later.audioDecodedSamples > first.audioDecodedSamples, `decoded audio samples rise: ${show([first, later])}`);
  assert.ok(later.videoFramesDecoded > first.videoFramesDecoded, `decoded video frames rise: ${show([first, later])}`);

  // The REST API lists both streams.
  const all = await (await fetch(`${callgate.httpUrl}/rest-api/stream/find_all`, { method: 'POST' })).json();
  assert.deepEqual(all.map((s) => `${s.name}:${s.published}:${s.status}`).sort(), ['cam1:false:PLAYING', 'cam1:true:PUBLISHING'], show(all));

  await stopStream(sdk, pubId);
  await waitStatus(sdk, pubId, 'UNPUBLISHED');
  const stopped = await waitStatus(viewer, playId, 'STOPPED');
  assert.equal(stopped.info, 'Stopped by publisher stop');
  await backend.waitForHook('unPublishStream', (r) => r.body?.mediaSessionId === pubId);
  const statuses = (id) => backend.hooks('StreamStatusEvent').filter((r) => r.body?.mediaSessionId === id).map((r) => r.body.status);
  await waitFor(() => statuses(playId).includes('STOPPED'), { what: 'StreamStatusEvent STOPPED for the player at the backend', seen: () => backend.summary() });
  assert.deepEqual(statuses(pubId), ['PENDING', 'PUBLISHING', 'UNPUBLISHED'], backend.describe());
  assert.deepEqual(statuses(playId), ['PENDING', 'PLAYING', 'STOPPED'], backend.describe());
});

e2eTest('play of an unknown name -> FAILED "Stream not found"', async ({ sdk, callgate }) => {
  await establish(sdk, callgate, { appKey: 'backendApp' });
  const id = await play(sdk, 'nobody-publishes-this');
  const failed = await waitStatus(sdk, id, 'FAILED');
  assert.equal(failed.info, 'Stream not found');
});

e2eTest('duplicate publish -> FAILED "Stream name is already in use"; the first stream goes on', async (env) => {
  const firstId = await publishing(env, 'dup');
  const other = await playerPage(env);
  const secondId = await publish(other, 'dup');
  const failed = await waitStatus(other, secondId, 'FAILED');
  assert.equal(failed.info, 'Stream name is already in use');
  await sleep(300);
  const first = (await streamEvents(env.sdk, firstId)).events.map((e) => e.status);
  assert.deepEqual(first, ['PUBLISHING'], `the first publisher is untouched: ${show(first)}`);
});

e2eTest('backend denies playStream with 403 (restOnError FAIL) -> FAILED with the backend reason', async (env) => {
  const { backend } = env;
  backend.on('connect', (r) => reply.json(200, { ...r.body, restClientConfig: { playStream: { restOnError: 'FAIL' } } }));
  backend.on('playStream', () => reply.json(403, { status: 403, reason: 'Viewer not allowed' }));
  await publishing(env, 'private');
  const viewer = await playerPage(env);
  const id = await play(viewer, 'private');
  const failed = await waitStatus(viewer, id, 'FAILED');
  assert.equal(failed.info, 'Viewer not allowed');
  const ev = await backend.waitForHook('StreamStatusEvent', (r) => r.body?.mediaSessionId === id && r.body?.status === 'FAILED');
  assert.equal(ev.body.info, 'Viewer not allowed');
});

e2eTest('a stream event from the publisher (stream.sendData) reaches the player under its own mediaSessionId', async (env) => {
  const { backend } = env;
  const pubId = await publishing(env, 'events');
  const viewer = await playerPage(env);
  const playId = await play(viewer, 'events');
  await waitStatus(viewer, playId, 'PLAYING');
  await sendStreamData(env.sdk, pubId, { hello: 'world' });
  const ev = await waitStreamEvent(viewer, playId, (e) => e.type === 'data');
  assert.equal(ev.mediaSessionId, playId, show(ev));
  assert.equal(ev.name, 'events');
  assert.deepEqual(ev.payload, { hello: 'world' });
  await backend.waitForHook('sendStreamEvent', (r) => r.body?.mediaSessionId === pubId && r.body?.type === 'data');
  await backend.waitForHook('StreamEvent', (r) => r.body?.mediaSessionId === playId && r.body?.payload?.hello === 'world');
});

e2eTest('available(): resolves "Available" for a published name, rejects "Stream not found" otherwise', async (env) => {
  await publishing(env, 'here');
  const viewer = await playerPage(env);
  const yes = await available(viewer, 'here');
  assert.deepEqual(yes, { outcome: 'resolved', info: 'Available' });
  const no = await available(viewer, 'not-here');
  assert.deepEqual(no, { outcome: 'rejected', info: 'Stream not found' });
});

e2eTest('publisher session.disconnect() -> player STOPPED "Stopped by publisher stop"', async (env) => {
  await publishing(env, 'leaving');
  const viewer = await playerPage(env);
  const playId = await play(viewer, 'leaving');
  await waitStatus(viewer, playId, 'PLAYING');
  await env.sdk.disconnect();
  const stopped = await waitStatus(viewer, playId, 'STOPPED');
  assert.equal(stopped.info, 'Stopped by publisher stop');
  await env.backend.waitForHook('StreamStatusEvent', (r) => r.body?.status === 'UNPUBLISHED' && r.body?.info === 'Stopped by session disconnect');
});

e2eTest(
  'keep-alive answered 403 -> the stream ends with "Terminated by keep-alive"',
  async (env) => {
    const { backend } = env;
    const pubId = await publishing(env, 'kept');
    await backend.waitForHook('StreamKeepAliveEvent', (r) => r.body?.mediaSessionId === pubId);
    backend.on('StreamKeepAliveEvent', () => reply.json(403, {}));
    const ended = await waitStatus(env.sdk, pubId, 'UNPUBLISHED');
    assert.equal(ended.info, 'Terminated by keep-alive');
  },
  { callgate: { media: { keep_alive_enabled: true, keep_alive_interval_ms: 300 } } },
);

e2eTest('H.264: a publisher whose offer has VP8 stripped (stripCodecs) is forwarded as H.264 and the player decodes it', async (env) => {
  await establish(env.sdk, env.callgate, { appKey: 'backendApp' });
  const pubId = await publish(env.sdk, 'h264', { stripCodecs: 'VP8,VP9,AV1' });
  await waitStatus(env.sdk, pubId, 'PUBLISHING');
  const offer = (await env.backend.waitForHook('publishStream')).body.sdp;
  assert.ok(!/VP8\/90000/.test(offer) && /H264\/90000/.test(offer), 'the server only saw H.264 video');
  const viewer = await playerPage(env);
  const playId = await play(viewer, 'h264');
  await waitStatus(viewer, playId, 'PLAYING');
  const facts = await waitFor(async () => {
    const f = await mediaFacts(viewer, playId);
    return f.videoWidth > 0 && f.bytesReceived > 0 ? f : null;
  }, { what: 'decoded H.264 video on the player', seen: () => mediaFacts(viewer, playId) });
  const codec = await viewer.page.evaluate(
    (id) =>
      new Promise((resolve) =>
        window.__e2e.streams[id].stream.getStats((raw) => {
          const inbound = (raw['inbound-rtp'] || []).find((r) => r.kind === 'video');
          const c = (raw.codec || []).find((x) => x.id === inbound?.codecId);
          resolve(c?.mimeType || null);
        }, true),
      ),
    playId,
  );
  assert.equal(codec, 'video/H264', `player video codec (${show(facts)})`);
});
