// Playing an IP camera with the official SDK: `createStream({name: "rtsp://…"}).play()` against a
// real RTSP server (Debian's GStreamer RTSP server, tests/rtsp/rtsp_server.py: a live x264
// picture on 127.0.0.1, Basic auth). Chromium decodes the camera's H.264 as callgate passes it on.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { e2eSuite } from '../lib/fixture.js';
import { establish, mediaFacts, play, stopStream, waitStatus } from '../lib/streams.js';
import { show, sleep, waitFor } from '../lib/util.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const script = path.join(here, '..', '..', 'rtsp', 'rtsp_server.py');

const e2eTest = e2eSuite();

/** The camera: the script as a child process; `lines` are the client events it printed. */
let camera;
before(async () => {
  // Debian's python3 (python3-gi is a Debian package), whatever python3 is first in PATH.
  const child = spawn('/usr/bin/python3', [script, '--user', 'viewer', '--password', 's3cret'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = [];
  const rl = readline.createInterface({ input: child.stdout });
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the RTSP server did not start')), 20_000);
    rl.on('line', (l) => {
      if (l.startsWith('PORT ')) {
        clearTimeout(timer);
        resolve(Number(l.slice(5)));
      } else {
        lines.push(l);
      }
    });
    child.on('exit', (code) => reject(new Error(`the RTSP server exited: ${code}`)));
  });
  camera = { child, port, lines };
});
after(() => camera?.child.kill());

const cameraOptions = { extraToml: '[security]\nallowed_private_ranges = ["127.0.0.0/8"]\n' };

e2eTest('SDK play of an rtsp:// URL -> PLAYING; Chromium decodes the camera\'s H.264; stop -> the pull ends', async (env) => {
  const { sdk, backend } = env;
  await establish(sdk, env.callgate, { appKey: 'backendApp' });
  const url = `rtsp://viewer:s3cret@127.0.0.1:${camera.port}/test`;
  const id = await play(sdk, url);
  await waitStatus(sdk, id, 'PLAYING');

  const facts = async () => ({
    ...(await mediaFacts(sdk, id)),
    currentTime: await sdk.page.evaluate((id) => document.getElementById(id)?.currentTime ?? 0, id),
  });
  const first = await waitFor(async () => {
    const f = await facts();
    return f.videoWidth > 0 && f.videoFramesDecoded > 0 ? f : null;
  }, { what: 'a decoded picture from the camera', seen: facts });
  assert.deepEqual([first.videoWidth, first.videoHeight], [320, 240], show(first));
  await sleep(1500);
  const later = await facts();
  assert.ok(later.videoFramesDecoded > first.videoFramesDecoded + 10, `decoded frames rise: ${show([first, later])}`);
  assert.ok(later.currentTime > first.currentTime + 0.5, `the video plays on: ${show([first, later])}`);

  const hook = await backend.waitForHook('playRTSP');
  assert.equal(hook.body.name, `rtsp://***@127.0.0.1:${camera.port}/test`, 'the backend sees the URL masked');

  // The SDK's stopStream names the stream as it was created: with the password.
  await stopStream(sdk, id);
  await waitStatus(sdk, id, 'STOPPED');
  const stop = await backend.waitForHook('stopStream');
  assert.equal(stop.body.name, `rtsp://***@127.0.0.1:${camera.port}/test`);
  assert.ok(!JSON.stringify(backend.summary()).includes('s3cret'), 'no hook carries the password');
  await waitFor(() => camera.lines.includes('CLOSED'), { what: 'the camera sees its RTSP session end', seen: () => camera.lines });
  assert.equal(camera.lines.filter((l) => l === 'PLAY').length, 1, show(camera.lines));
}, { callgate: cameraOptions });

e2eTest('SDK play of an rtsp:// URL with a wrong password -> FAILED with the 401 info', async (env) => {
  const { sdk } = env;
  await establish(sdk, env.callgate, { appKey: 'backendApp' });
  const id = await play(sdk, `rtsp://viewer:nope@127.0.0.1:${camera.port}/test`);
  const failed = await waitStatus(sdk, id, 'FAILED');
  assert.equal(failed.info, 'RTSP source refused the credentials (401 Unauthorized)');
}, { callgate: cameraOptions });
