// The SDK's own Stream Snapshot demo page (examples/demo/streaming/stream-snapshot, unmodified)
// against callgate: publish Chromium's fake camera (VP8), click "Take a snapshot"; the page asks
// with a new, never-played stream object of the same name, and shows the PNG from
// `snapshotCompleted` in its <img>, whose natural size is the published video's.
import assert from 'node:assert/strict';
import { e2eSuite } from '../lib/fixture.js';
import { startDemoServer } from '../lib/demo-server.js';
import { waitFor } from '../lib/util.js';

const e2eTest = e2eSuite();

e2eTest(
  'Stream Snapshot demo: the snapshot of the published camera shows in the page',
  async ({ callgate, sdk }) => {
    const demo = await startDemoServer({ recordsTo: callgate.httpUrl });
    try {
      const page = sdk.page;
      await page.goto(`${demo.url}/examples/demo/streaming/stream-snapshot/stream-snapshot.html`);
      const name = `snap${Date.now()}`;
      await page.fill('#url', `${callgate.wsUrl}/${name}`);
      await page.click('#publishBtn');
      await page.waitForFunction(() => document.querySelector('#status').textContent === 'PUBLISHING', null, { timeout: 15_000 });
      await page.click('#snapshotBtn');
      const img = await waitFor(
        () =>
          page.evaluate(() => {
            const i = document.querySelector('#dynImg');
            const status = document.querySelector('#snapshotStatus').textContent;
            if (status === 'FAILED') return { failed: true };
            return i.src.startsWith('data:image/png;base64,') && i.complete && i.naturalWidth > 0
              ? { width: i.naturalWidth, height: i.naturalHeight, status }
              : null;
          }),
        { what: 'the snapshot in the page', timeout: 15_000 },
      );
      assert.ok(!img.failed, 'the page shows snapshot FAILED');
      assert.equal(img.status, '', 'the page cleared "processing..."');
      const local = await page.evaluate(() => {
        const v = document.querySelector('#localVideo video');
        return { width: v.videoWidth, height: v.videoHeight };
      });
      assert.ok(local.width > 0, 'the local video plays');
      assert.deepEqual({ width: img.width, height: img.height }, local, 'the snapshot has the published size');

      // A second snapshot at once works too (the button is enabled again): its keyframe request
      // comes within the media core's throttle interval of the first one's and is repeated.
      await page.evaluate(() => {
        document.querySelector('#dynImg').removeAttribute('src');
      });
      await page.click('#snapshotBtn');
      await waitFor(
        () => page.evaluate(() => document.querySelector('#dynImg').naturalWidth > 0),
        { what: 'the second snapshot', timeout: 15_000 },
      );
    } finally {
      await demo.close();
    }
  },
  { timeout: 90_000 },
);
