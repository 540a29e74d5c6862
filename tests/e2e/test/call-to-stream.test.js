// A SIP call's audio as a stream (`toStream` on /rest-api/call/startup): a sipp callee plays a
// PCMU tone from a pcap (tests/sipp/pcmu_pcap.py), callgate publishes what it sends as the stream
// `toStream`, and the official SDK plays that stream in headless Chromium: inbound audio bytes
// rise and the decoder produces samples. The call's end stops the player.
import assert from 'node:assert/strict';
import { e2eSuite } from '../lib/fixture.js';
import { SIP_TOML, startTalkingSipp } from '../lib/calls.js';
import { establish, mediaFacts, play, waitStatus } from '../lib/streams.js';
import { show, sleep, waitFor } from '../lib/util.js';

const e2eTest = e2eSuite();

async function rest(callgate, path, body) {
  const r = await fetch(`${callgate.httpUrl}/rest-api/${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: r.status, text: await r.text() };
}

e2eTest('SDK playStream of a REST call\'s toStream: the SIP side\'s audio reaches Chromium (bytes rise); the call\'s end stops the player', async (env) => {
  const { sdk, backend, callgate } = env;
  const sipp = await startTalkingSipp(30);
  try {
    // As the SDK's "SIP as RTMP" demos send it (values as strings).
    const started = await rest(callgate, 'call/startup', {
      callId: 'e2e-call-1', callee: '3001', toStream: 'sip-audio', hasAudio: 'true', hasVideo: 'false',
      sipLogin: '3000', sipAuthenticationName: '3000', sipPassword: 'secret', sipDomain: '127.0.0.1',
      sipOutboundProxy: '127.0.0.1', sipPort: String(sipp.port), appKey: 'backendApp', sipRegisterRequired: 'false',
    });
    assert.equal(started.status, 200, started.text);
    await backend.waitForHook('CallStatusEvent', (r) => r.body.callId === 'e2e-call-1' && r.body.status === 'ESTABLISHED');

    await establish(sdk, callgate, { appKey: 'backendApp' });
    const id = await play(sdk, 'sip-audio');
    await waitStatus(sdk, id, 'PLAYING');
    const first = await waitFor(async () => {
      const f = await mediaFacts(sdk, id);
      return f.audioPackets > 0 && f.bytesReceived > 0 ? f : null;
    }, { what: 'inbound audio from the call', seen: () => mediaFacts(sdk, id) });
    await sleep(2000);
    const later = await mediaFacts(sdk, id);
    // 2 s of 20 ms PCMU packets: 100 packets of 160 bytes (+ RTP headers).
    assert.ok(later.bytesReceived > first.bytesReceived + 8000, `audio bytes rise: ${show([first, later])}`);
    assert.ok(later.audioPackets > first.audioPackets + 50, `audio packets rise: ${show([first, later])}`);
    assert.ok(later.audioDecodedSamples > first.audioDecodedSamples + 8000, `the decoder produces samples: ${show([first, later])}`);
    assert.equal(later.videoFramesDecoded, 0);

    const hook = await backend.waitForHook('playStream', (r) => r.body.mediaSessionId === id);
    assert.equal(hook.body.name, 'sip-audio');

    const terminated = await rest(callgate, 'call/terminate', { callId: 'e2e-call-1' });
    assert.equal(terminated.status, 200, terminated.text);
    const stopped = await waitStatus(sdk, id, 'STOPPED');
    assert.equal(stopped.info, 'Stopped by publisher stop');
    const ended = await backend.waitForHook('StreamStatusEvent', (r) => r.body.mediaSessionId === 'e2e-call-1' && r.body.status === 'UNPUBLISHED');
    assert.equal(ended.body.info, 'Stopped by call end');
    assert.equal(await sipp.wait(), 0, `sipp scenario passed: ${sipp.stderr()}`);
  } finally {
    sipp.stop();
  }
}, { callgate: { extraToml: SIP_TOML }, timeout: 90_000 });
