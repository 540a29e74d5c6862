// The SDK's own Two Way Video Chat demo (examples/demo/streaming/video-chat, unmodified: it loads
// flashphoner-room-api.js and the conference demo's conference.js) against callgate's room app
// (docs/rooms.md), in two browser contexts: both join one room through the Room API (`join`,
// the OnDataEvent hook at a real backend first), each publishes into it, each plays the other's
// stream from STATE/JOINED/PUBLISHED and decodes its frames, a chat message crosses, a third
// page with a login already in the room gets the room's FAILED, a leave reaches the other, and
// so does a tab closed while in the room (session close -> LEFT).
import assert from 'node:assert/strict';
import { e2eSuite } from '../lib/fixture.js';
import { startDemoServer } from '../lib/demo-server.js';
import { waitFor } from '../lib/util.js';

const e2eTest = e2eSuite();

const text = (page, sel) => page.evaluate((s) => document.querySelector(s)?.textContent ?? null, sel);

/** Waits until `sel`'s text satisfies `pred` (shows what it was on timeout). */
function waitText(page, sel, pred, what, timeout = 20_000) {
  return waitFor(async () => pred((await text(page, sel)) || ''), { what, timeout, seen: () => text(page, sel) });
}

/** The participant video's decoded size, once frames are being decoded. */
async function participantVideo(page, who) {
  return waitFor(
    () =>
      page.evaluate(() => {
        const v = document.querySelector('#participant1Display video');
        if (!v || v.videoWidth === 0) return null;
        const q = v.getVideoPlaybackQuality();
        return q.totalVideoFrames > 10 ? { width: v.videoWidth, height: v.videoHeight, frames: q.totalVideoFrames } : null;
      }),
    { what: `${who} decoding the other participant's video`, timeout: 30_000 },
  );
}

e2eTest(
  'Video Chat demo: join, publish, play each other, chat, duplicate login refused, leave, close',
  async ({ callgate, backend, sdk, newPage }) => {
    const demo = await startDemoServer({ recordsTo: callgate.httpUrl });
    try {
      const room = `room${Date.now()}`;
      const url = `${demo.url}/examples/demo/streaming/video-chat/video-chat.html?roomName=${room}`;
      const a = sdk.page;
      const b = (await newPage()).page;
      const join = async (page, login) => {
        await page.goto(url);
        await page.fill('#url', callgate.wsUrl);
        await page.fill('#login', login);
        await page.click('#joinBtn');
      };

      await join(a, 'alice');
      await waitText(a, '#status', (t) => t === 'ESTABLISHED', 'alice ESTABLISHED');
      await waitText(a, '#chat', (t) => t.includes('room is empty'), 'alice: STATE of an empty room');
      await waitText(a, '#localStatus', (t) => t === 'PUBLISHING', 'alice PUBLISHING');

      await join(b, 'bob');
      // Bob's STATE lists Alice's stream: the page plays it at once.
      await waitText(b, '#chat', (t) => t.includes('participants: alice'), 'bob: STATE with alice');
      await waitText(b, '#participant1Name', (t) => t === 'alice', 'bob sees alice');
      await waitText(b, '#localStatus', (t) => t === 'PUBLISHING', 'bob PUBLISHING');
      // Alice got JOINED, then PUBLISHED for Bob's stream, and plays it.
      await waitText(a, '#chat', (t) => t.includes('bob - joined'), 'alice: JOINED bob');
      await waitText(a, '#participant1Name', (t) => t === 'bob', 'alice sees bob');

      const atA = await participantVideo(a, 'alice');
      const atB = await participantVideo(b, 'bob');
      assert.ok(atA.width > 0 && atB.width > 0, JSON.stringify({ atA, atB }));

      // The streams are the Room API's: <room>-<login>-<4 hex>, custom.name = the room.
      const published = backend.hooks('publishStream').map((r) => r.body);
      assert.equal(published.length, 2, JSON.stringify(published.map((p) => p.name)));
      for (const [p, login] of [[published[0], 'alice'], [published[1], 'bob']]) {
        assert.match(p.name, new RegExp(`^${room}-${login}-[0-9a-f]{4}$`));
        assert.deepEqual(p.custom, { name: room });
      }

      // Chat: the page sends one sendMessage per participant; Bob's page shows Alice's line.
      await a.fill('#message', 'hello bob');
      await a.click('#sendMessageBtn');
      await waitText(b, '#chat', (t) => t.includes('alice - hello bob'), 'bob: MESSAGE from alice');

      // A third page logging in as alice: the room's FAILED with the reason, shown by the page.
      const c = (await newPage()).page;
      await join(c, 'alice');
      await waitText(c, '#failedInfo', (t) => t === `Login alice is already in room ${room}`, 'the duplicate login refused');

      // Bob leaves: Alice's page hears LEFT; Bob's stream was unpublished by the SDK on leave.
      await waitFor(() => b.evaluate(() => !document.querySelector('#joinBtn').disabled && document.querySelector('#joinBtn').textContent === 'Leave'), {
        what: "bob's Leave button enabled",
      });
      await b.click('#joinBtn');
      await waitText(a, '#chat', (t) => t.includes('bob - left'), 'alice: LEFT bob');
      await waitText(a, '#participant1Name', (t) => t === 'NONE', "alice's participant slot freed");
      await waitText(b, '#localStatus', (t) => t === 'UNPUBLISHED', 'bob UNPUBLISHED on leave');

      // Bob joins again (same session), then closes his tab: Alice's page hears LEFT again.
      await waitFor(() => b.evaluate(() => !document.querySelector('#joinBtn').disabled && document.querySelector('#joinBtn').textContent === 'Join'), {
        what: "bob's Join button enabled",
      });
      await b.click('#joinBtn');
      await waitText(a, '#participant1Name', (t) => t === 'bob', 'alice sees bob again');
      await waitText(b, '#localStatus', (t) => t === 'PUBLISHING', 'bob PUBLISHING again');
      await participantVideo(a, 'alice (bob again)');
      await b.context().close();
      await waitText(a, '#chat', (t) => t.split('bob - left').length === 3, 'alice: LEFT bob on his session close');
      await waitText(a, '#participant1Name', (t) => t === 'NONE', "alice's participant slot freed again");

      // Every room command went through the OnDataEvent hook of roomApp at the backend.
      const commands = backend.hooks('OnDataEvent').map((r) => `${r.body.appKey}:${r.body.payload?.command}:${r.body.payload?.options?.name ?? r.body.payload?.options?.roomConfig?.name}`);
      for (const want of [`roomApp:join:${room}`, `roomApp:sendMessage:${room}`, `roomApp:leave:${room}`]) {
        assert.ok(commands.includes(want), `${want} in ${JSON.stringify(commands)}`);
      }
      assert.equal(commands.filter((c) => c === `roomApp:join:${room}`).length, 4, JSON.stringify(commands));
    } finally {
      await demo.close();
    }
  },
  { timeout: 120_000, callgate: { apps: { roomApp: '{backend}' } } },
);
