// The SDK's Room API itself (flashphoner-room-api.js, window.RoomApi) against callgate's room
// app (docs/rooms.md), in two browser contexts, with the room events recorded as the API hands
// them out: join (STATE, JOINED), a member publishes (PUBLISHED), the other plays that stream
// from the participant object and decodes it, the publisher stops (the participant's stream is
// gone: UNPUBLISHED), messages both ways (MESSAGE with the sender's participant), leave (LEFT),
// and a message to the member who left fails through the API's error callback.
import assert from 'node:assert/strict';
import { e2eSuite } from '../lib/fixture.js';
import { startDemoServer } from '../lib/demo-server.js';
import { waitFor } from '../lib/util.js';

const e2eTest = e2eSuite();

/** Loads the Room API bundle (an SDK demo page that loads it, not used otherwise). */
async function roomApiPage(page, demoUrl) {
  await page.goto(`${demoUrl}/examples/demo/streaming/video-chat/video-chat.html`);
  await page.waitForFunction(() => typeof window.RoomApi === 'object' && !!window.RoomApi.connect, null, { timeout: 10_000 });
}

/** Connects as `login` and joins `room`; every room event goes to window.__room.events. */
function connectAndJoin(page, wsUrl, login, room) {
  return page.evaluate(
    ({ wsUrl, login, room }) =>
      new Promise((resolve, reject) => {
        const S = RoomApi.sdk.constants.SESSION_STATUS;
        const E = RoomApi.events;
        const r = (window.__room = { events: [], participants: {} });
        const record = (name, p, extra = {}) => {
          if (p && p.name) r.participants[p.name()] = p;
          r.events.push({ name, who: p && p.name ? p.name() : null, ...extra });
        };
        RoomApi.connect({ urlServer: wsUrl, username: login })
          .on(S.FAILED, () => reject(new Error('session FAILED')))
          .on(S.ESTABLISHED, (connection) => {
            r.connection = connection;
            r.room = connection
              .join({ name: room, record: false })
              .on(E.STATE, (room) => {
                const ps = room.getParticipants();
                for (const p of ps) r.participants[p.name()] = p;
                record('STATE', null, { participants: ps.map((p) => ({ name: p.name(), streams: p.getStreams().map((s) => s.streamName()) })) });
                resolve();
              })
              .on(E.JOINED, (p) => record('JOINED', p))
              .on(E.LEFT, (p) => record('LEFT', p))
              .on(E.PUBLISHED, (p) => record('PUBLISHED', p, { streams: p.getStreams().map((s) => s.streamName()) }))
              .on(E.MESSAGE, (m) => record('MESSAGE', m.from, { text: m.text }))
              .on(E.FAILED, (room, info) => reject(new Error(`room FAILED: ${info}`)));
          });
      }),
    { wsUrl, login, room },
  );
}

const events = (page) => page.evaluate(() => window.__room.events);
function waitEvent(page, pred, what) {
  return waitFor(async () => (await events(page)).find(pred), { what, seen: () => events(page), timeout: 20_000 });
}

e2eTest(
  'Room API: join, publish, play a participant stream, unpublish, messages, leave, error callback',
  async ({ callgate, backend, sdk, newPage }) => {
    const demo = await startDemoServer({ recordsTo: callgate.httpUrl });
    try {
      const room = `api${Date.now()}`;
      const a = sdk.page;
      const b = (await newPage()).page;
      await roomApiPage(a, demo.url);
      await roomApiPage(b, demo.url);

      await connectAndJoin(a, callgate.wsUrl, 'alice', room);
      assert.deepEqual((await events(a))[0], { name: 'STATE', who: null, participants: [] });
      await connectAndJoin(b, callgate.wsUrl, 'bob', room);
      assert.deepEqual((await events(b))[0], { name: 'STATE', who: null, participants: [{ name: 'alice', streams: [] }] });
      await waitEvent(a, (e) => e.name === 'JOINED' && e.who === 'bob', 'alice: JOINED bob');

      // Alice publishes into the room (room.publish names the stream and sets custom.name).
      const streamName = await a.evaluate(
        () =>
          new Promise((resolve, reject) => {
            const S = RoomApi.sdk.constants.STREAM_STATUS;
            const d = document.createElement('div');
            document.body.appendChild(d);
            window.__room.stream = window.__room.room
              .publish({ display: d, constraints: { audio: true, video: true } })
              .on(S.PUBLISHING, (s) => resolve(s.name()))
              .on(S.FAILED, (s) => reject(new Error(`publish FAILED: ${s.getInfo()}`)));
          }),
      );
      assert.match(streamName, new RegExp(`^${room}-alice-[0-9a-f]{4}$`));
      const published = await waitEvent(b, (e) => e.name === 'PUBLISHED' && e.who === 'alice', 'bob: PUBLISHED alice');
      assert.deepEqual(published.streams, [streamName]);

      // Bob plays it from the participant object and decodes frames.
      await b.evaluate(
        () =>
          new Promise((resolve, reject) => {
            const S = RoomApi.sdk.constants.STREAM_STATUS;
            const d = document.createElement('div');
            d.id = 'aliceDisplay';
            document.body.appendChild(d);
            window.__room.participants.alice
              .getStreams()[0]
              .play(d)
              .on(S.PLAYING, () => resolve())
              .on(S.FAILED, (s) => reject(new Error(`play FAILED: ${s.getInfo()}`)));
          }),
      );
      const video = await waitFor(
        () =>
          b.evaluate(() => {
            const v = document.querySelector('#aliceDisplay video');
            return v && v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames > 10 ? { w: v.videoWidth, h: v.videoHeight } : null;
          }),
        { what: "bob decoding alice's room stream", timeout: 30_000 },
      );
      assert.ok(video.w > 0 && video.h > 0);

      // Alice stops her stream: UNPUBLISHED removes it from Bob's participant (no callback).
      await a.evaluate(() => window.__room.stream.stop());
      await waitFor(() => b.evaluate(() => window.__room.participants.alice.getStreams().length === 0), {
        what: "alice's stream gone from bob's participant",
        seen: () => b.evaluate(() => window.__room.participants.alice.getStreams().map((s) => s.streamName())),
      });

      // Messages both ways; the API gives the sender as a participant.
      await b.evaluate(() => window.__room.participants.alice.sendMessage('hi alice'));
      await waitEvent(a, (e) => e.name === 'MESSAGE' && e.who === 'bob' && e.text === 'hi alice', 'alice: MESSAGE from bob');
      await a.evaluate(() => window.__room.participants.bob.sendMessage('hi bob'));
      await waitEvent(b, (e) => e.name === 'MESSAGE' && e.who === 'alice' && e.text === 'hi bob', 'bob: MESSAGE from alice');

      // Alice leaves (the promise resolves on ACCEPTED); Bob hears LEFT.
      const left = await a.evaluate(() => window.__room.room.leave().then((r) => r.name()));
      assert.equal(left, room);
      await waitEvent(b, (e) => e.name === 'LEFT' && e.who === 'alice', 'bob: LEFT alice');
      // A message to her now fails: the API calls the error callback (DataStatusEvent FAILED).
      await b.evaluate(
        () =>
          new Promise((resolve, reject) => {
            const t = setTimeout(() => reject(new Error('no error callback')), 10_000);
            window.__room.participants.alice.sendMessage('still there?', () => {
              clearTimeout(t);
              resolve();
            });
          }),
      );
      const refused = backend.hooks('DataStatusEvent').map((r) => r.body).find((b) => b.status === 'FAILED');
      assert.equal(refused?.info, `No participant alice in room ${room}`, JSON.stringify(refused));
      // Nothing arrived at Alice after she left.
      assert.ok(!(await events(a)).some((e) => e.text === 'still there?'));
    } finally {
      await demo.close();
    }
  },
  { timeout: 120_000, callgate: { apps: { roomApp: '{backend}' } } },
);
