// SIP calls with the official SDK in headless Chromium against a sipp peer through callgate.
import assert from 'node:assert/strict';
import { reply } from '../lib/backend.js';
import { e2eSuite } from '../lib/fixture.js';
import { callEvents, callMediaFacts, hangup, SIP_TOML, startCall, startSipp, waitCallStatus } from '../lib/calls.js';
import { startKamailio } from '../lib/kamailio.js';
import { establish } from '../lib/streams.js';
import { show, sleep, waitFor } from '../lib/util.js';

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

e2eTest('outgoing calls rejected 403, 486, 503, 603 -> FAILED in the page; the backend gets CallStatusEvent FAILED with the exact info and raw response', async (env) => {
  const { sdk, backend, callgate } = env;
  const cases = [[403, 'FORBIDDEN'], [486, 'BUSY HERE'], [503, 'SERVICE UNAVAILABLE'], [603, 'DECLINE']];
  let first = true;
  for (const [code, phrase] of cases) {
    const sipp = await startSipp(`uas_reject_${code}.xml`);
    try {
      // One session per case: the session's sipPort names this case's sipp.
      if (!first) await sdk.disconnect();
      first = false;
      await establish(sdk, callgate, { appKey: 'backendApp', sipOptions: sipOptions(sipp) });
      const id = await startCall(sdk, '3001');
      await waitCallStatus(sdk, id, 'FAILED');
      assert.equal(await sipp.wait(), 0, `sipp ${code}: ${sipp.stderr()}`);
      const ev = await backend.waitForHook('CallStatusEvent', (r) => r.body.callId === id && r.body.status === 'FAILED');
      assert.equal(ev.body.info, `SIP ${code} ${phrase}`);
      assert.equal(ev.body.sipStatus, code);
      assert.match(ev.body.sipMessageRaw, new RegExp(`^SIP/2\\.0 ${code} `), 'the raw SIP response as received');
      assert.match(sipp.messages(), new RegExp(`SIP/2\\.0 ${code} `));
    } finally {
      sipp.stop();
    }
  }
}, { callgate: { extraToml: SIP_TOML }, timeout: 90_000 });

e2eTest('audio both ways: the page audio goes through the bridge to sipp (-rtp_echo) and comes back; inbound bytes rise', async (env) => {
  const { sdk, callgate } = env;
  const sipp = await startSipp('uas_answer_local_bye.xml', { rtpEcho: true });
  try {
    await establish(sdk, callgate, { appKey: 'backendApp', sipOptions: sipOptions(sipp) });
    const id = await startCall(sdk, '3001');
    await waitCallStatus(sdk, id, 'ESTABLISHED');
    const first = await waitFor(async () => {
      const f = await callMediaFacts(sdk, id);
      return f.bytesReceived > 0 ? f : null;
    }, { what: 'inbound RTP bytes on the call', seen: () => callMediaFacts(sdk, id) });
    await sleep(1000);
    const later = await callMediaFacts(sdk, id);
    assert.ok(later.bytesReceived > first.bytesReceived, `inbound bytes rise: ${show([first, later])}`);
    await hangup(sdk, id);
    await waitCallStatus(sdk, id, 'FINISH');
    assert.equal(await sipp.wait(), 0, sipp.stderr());
  } finally {
    sipp.stop();
  }
}, { callgate: { extraToml: SIP_TOML } });

e2eTest('hold and unhold re-INVITEs (sipp checks sendonly then sendrecv) -> HOLD, ESTABLISHED; then FINISH', async (env) => {
  const { sdk, backend, callgate } = env;
  const sipp = await startSipp('uas_hold.xml');
  try {
    await establish(sdk, callgate, { appKey: 'backendApp', sipOptions: sipOptions(sipp) });
    const id = await startCall(sdk, '3001');
    await waitCallStatus(sdk, id, 'ESTABLISHED');
    await sdk.page.evaluate((id) => window.__e2e.calls[id].call.hold(), id);
    await waitCallStatus(sdk, id, 'HOLD');
    await sdk.page.evaluate((id) => window.__e2e.calls[id].call.unhold(), id);
    await waitFor(async () => (await callEvents(sdk, id)).filter((s) => s === 'ESTABLISHED').length === 2, {
      what: 'ESTABLISHED again after unhold', seen: () => callEvents(sdk, id),
    });
    await hangup(sdk, id);
    await waitCallStatus(sdk, id, 'FINISH');
    assert.equal(await sipp.wait(), 0, sipp.stderr());
    await backend.waitForHook('unhold');
  } finally {
    sipp.stop();
  }
}, { callgate: { extraToml: SIP_TOML } });

e2eTest('sendDTMF("5", "INFO") reaches sipp as SIP INFO Signal=5', async (env) => {
  const { sdk, callgate } = env;
  const sipp = await startSipp('uas_info_dtmf.xml');
  try {
    await establish(sdk, callgate, { appKey: 'backendApp', sipOptions: sipOptions(sipp) });
    const id = await startCall(sdk, '3001');
    await waitCallStatus(sdk, id, 'ESTABLISHED');
    await sdk.page.evaluate((id) => window.__e2e.calls[id].call.sendDTMF('5', 'INFO'), id);
    await waitFor(async () => /INFO sip:/.test(sipp.messages()) && /SIP\/2\.0 200 OK[\s\S]*CSeq: \d+ INFO/.test(sipp.messages()), {
      what: 'sipp answered the INFO', seen: () => sipp.messages().slice(-2000),
    });
    await hangup(sdk, id);
    await waitCallStatus(sdk, id, 'FINISH');
    assert.equal(await sipp.wait(), 0, sipp.stderr());
  } finally {
    sipp.stop();
  }
}, { callgate: { extraToml: SIP_TOML } });

e2eTest('a backend rewrites callee (OVERWRITE) -> sipp gets the INVITE for the new callee; transfer() -> REFER seen by sipp', async (env) => {
  const { sdk, backend, callgate } = env;
  backend.on('connect', (r) =>
    reply.json(200, { ...r.body, restClientConfig: { call: { restPolicy: 'OVERWRITE', restOverwrite: 'callee' } } }),
  );
  backend.on('call', (r) => reply.json(200, { ...r.body, callee: '4242' }));
  const sipp = await startSipp('uas_refer.xml', { keys: { refer_to_user: '3002' } });
  try {
    await establish(sdk, callgate, { appKey: 'backendApp', sipOptions: sipOptions(sipp) });
    const id = await startCall(sdk, '3001');
    await waitCallStatus(sdk, id, 'ESTABLISHED');
    assert.match(sipp.messages(), /INVITE sip:4242@127\.0\.0\.1 SIP\/2\.0/);
    await sdk.page.evaluate((id) => window.__e2e.calls[id].call.transfer('3002'), id);
    await backend.waitForHook('TransferStatusEvent', (r) => r.body.status === 'COMPLETED');
    await hangup(sdk, id);
    await waitCallStatus(sdk, id, 'FINISH');
    assert.equal(await sipp.wait(), 0, sipp.stderr());
  } finally {
    sipp.stop();
  }
}, { callgate: { extraToml: SIP_TOML } });

e2eTest('SIP credentials injected by the connect answer register with Kamailio and never reach the page (clientExclude)', async (env) => {
  const { sdk, backend, callgate } = env;
  const kamailio = await startKamailio();
  try {
    // The click-to-call pattern (spec/rest-hooks.md §3): the page knows no SIP account.
    backend.on('connect', (r) => reply.json(200, {
      ...r.body,
      sipLogin: '3001', sipPassword: 'secret3001', sipDomain: `127.0.0.1:${kamailio.port}`, sipRegisterRequired: true,
      restClientConfig: { ConnectionStatusEvent: { clientExclude: 'sipPassword,sipDomain' } },
    }));
    const established = await establish(sdk, callgate, { appKey: 'backendApp' });
    assert.equal(established.payload.sipLogin, '3001');
    assert.ok(!('sipPassword' in established.payload) && !('sipDomain' in established.payload), show(established.payload));
    await sdk.waitForEvent('REGISTERED');
    await backend.waitForHook('RegistrationStatusEvent', (r) => r.body.status === 'REGISTERED' && r.body.sipLogin === '3001');
    const pageSaw = JSON.stringify(await sdk.events());
    assert.ok(!pageSaw.includes('secret3001'), 'the password never reaches the page');
  } finally {
    kamailio.stop();
  }
}, { callgate: { extraToml: SIP_TOML } });
