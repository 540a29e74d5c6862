// The SDK's own Stream Recording demo page (examples/demo/streaming/stream_recording, unmodified)
// against callgate: publish with record: true from Chromium's fake camera, stop, the page shows
// its download link (from getRecordInfo(), i.e. recordName), and the file behind it plays in the
// page's own <video>: VP8 decoded (videoWidth > 0), duration within 1 s of the time recorded.
import assert from 'node:assert/strict';
import { after } from 'node:test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { e2eSuite } from '../lib/fixture.js';
import { startDemoServer } from '../lib/demo-server.js';
import { sleep, waitFor } from '../lib/util.js';

const records = fs.mkdtempSync(path.join(os.tmpdir(), 'callgate-e2e-records-'));
const e2eTest = e2eSuite();
after(() => fs.rmSync(records, { recursive: true, force: true }));

e2eTest(
  'Stream Recording demo: the download link appears and the recorded WebM plays',
  async ({ callgate, sdk }) => {
    const demo = await startDemoServer({ recordsTo: callgate.httpUrl });
    try {
      const page = sdk.page;
      await page.goto(`${demo.url}/examples/demo/streaming/stream_recording/recording.html`);
      const name = `rec${Date.now()}`;
      // The page proposes ws://<its host>:8080/<random>; a user types the server's address.
      await page.fill('#url', `${callgate.wsUrl}/${name}`);
      await page.click('#publishBtn');
      await page.waitForFunction(() => document.querySelector('#status').textContent === 'PUBLISHING', null, { timeout: 15_000 });
      const started = Date.now();
      await sleep(4000);
      await page.click('#publishBtn'); // Stop
      const recordedMs = Date.now() - started;
      await page.waitForFunction(() => document.querySelector('#status').textContent === 'UNPUBLISHED', null, { timeout: 15_000 });
      await page.waitForFunction(() => getComputedStyle(document.querySelector('#downloadDiv')).display !== 'none', null, { timeout: 15_000 });

      // The page's session uses defaultApp (EchoApp): the recordName is read from the link.
      const href = await page.getAttribute('#link', 'href');
      const prefix = `${demo.url}/client/records/`;
      assert.ok(href.startsWith(prefix), href);
      const recordName = href.slice(prefix.length);
      assert.match(recordName, new RegExp(`^${name}-\\d{14}-\\d{3}\\.webm$`));

      // The page's <video> loads the file from the link and plays it.
      const media = await waitFor(
        () =>
          page.evaluate(() => {
            const v = document.querySelector('#recVideo');
            return v.readyState >= 1 && v.videoWidth > 0 && Number.isFinite(v.duration)
              ? { duration: v.duration, width: v.videoWidth, height: v.videoHeight }
              : null;
          }),
        { what: 'the recording loaded in the page', timeout: 15_000 },
      );
      assert.ok(Math.abs(media.duration * 1000 - recordedMs) <= 1000, `duration ${media.duration} s, recorded for ${recordedMs} ms`);
      await page.evaluate(() => {
        const v = document.querySelector('#recVideo');
        v.muted = true;
        return v.play();
      });
      await waitFor(() => page.evaluate(() => document.querySelector('#recVideo').currentTime > 1), {
        what: 'the recording playing',
        timeout: 15_000,
      });

      // The link serves the file as written.
      const body = Buffer.from(await (await fetch(href)).arrayBuffer());
      const onDisk = fs.readFileSync(path.join(records, recordName));
      assert.ok(body.length > 10_000 && body.equals(onDisk), `the download is the file (${body.length} bytes)`);
    } finally {
      await demo.close();
    }
  },
  { timeout: 90_000, callgate: { extraToml: `[recording]\ndir = ${JSON.stringify(records)}\n` } },
);
