// SIP calls with the official SDK in headless Chromium against a sipp peer through callgate.
import assert from 'node:assert/strict';
import { e2eSuite } from '../lib/fixture.js';
import { callEvents, hangup, SIP_TOML, startCall, startSipp, waitCallStatus } from '../lib/calls.js';
import { establish } from '../lib/streams.js';
import { show } from '../lib/util.js';

const e2eTest = e2eSuite();

function sipOptions(sipp) {
  return { login: '3000', password: 'secret', domain: '127.0.0.1', port: String(sipp.port), registerRequired: false };
}

e2eTest('outgoing call to a sipp UAS: TRYING -> RING -> ESTABLISHED; hangup -> FINISH; sipp sees the BYE', async (env) => {
  const { sdk, backend, callgate } = env;
  const sipp = await startSipp('uas_answer_local_bye.xml');
  try {
    await establish(sdk, callgate, { appKey: 'backendApp', sipOptions: sipOptions(sipp) });
    const id = await startCall(sdk, '3001');
    await waitCallStatus(sdk, id, 'ESTABLISHED');
    await hangup(sdk, id);
    await waitCallStatus(sdk, id, 'FINISH');
    const events = await callEvents(sdk, id);
    assert.deepEqual(events.filter((s) => s !== 'PENDING'), ['TRYING', 'RING', 'ESTABLISHED', 'FINISH'], show(events));
    assert.equal(await sipp.wait(), 0, `sipp scenario passed: ${sipp.stderr()}`);
    assert.match(sipp.messages(), /INVITE sip:3001@127\.0\.0\.1 SIP\/2\.0/);
    const call = await backend.waitForHook('call');
    assert.equal(call.body.callee, '3001');
  } finally {
    sipp.stop();
  }
}, { callgate: { extraToml: SIP_TOML } });

e2eTest('outgoing call rejected 486 -> FAILED in the page', async (env) => {
  const { sdk, callgate } = env;
  const sipp = await startSipp('uas_reject_486.xml');
  try {
    await establish(sdk, callgate, { appKey: 'backendApp', sipOptions: sipOptions(sipp) });
    const id = await startCall(sdk, '3001');
    await waitCallStatus(sdk, id, 'FAILED');
    assert.equal(await sipp.wait(), 0, sipp.stderr());
  } finally {
    sipp.stop();
  }
}, { callgate: { extraToml: SIP_TOML } });
