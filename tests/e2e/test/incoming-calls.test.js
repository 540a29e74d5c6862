// Incoming calls with the official SDK: a sipp UAC calling a registered page through callgate,
// and two pages registered to Kamailio calling each other (audio both ways, through two bridges).
import assert from 'node:assert/strict';
import { reply } from '../lib/backend.js';
import { e2eSuite } from '../lib/fixture.js';
import { answerCall, callEvents, callMediaFacts, hangup, startCall, startSipp, waitCallStatus, waitIncoming, watchIncoming } from '../lib/calls.js';
import { startKamailio } from '../lib/kamailio.js';
import { establish } from '../lib/streams.js';
import { freePort, show, sleep, waitFor } from '../lib/util.js';

const e2eTest = e2eSuite();

// callgate's SIP port: fixed per file so the sipp caller knows where to send its INVITE.
const SIP_PORT = await freePort();
const SIP_TOML = `[sip]\nbind = "127.0.0.1:${SIP_PORT}"\n`;

async function registrar() {
  return startSipp('uas_register_digest.xml', { keys: { user: '3000', password: 'secret', realm: 'callgate.test', expires: '120' } });
}

/** Inbound RTP bytes of the call rise over one second (after the first bytes arrived). */
async function assertInboundRising(sdk, id, who) {
  const first = await waitFor(async () => {
    const f = await callMediaFacts(sdk, id);
    return f.bytesReceived > 0 ? f : null;
  }, { what: `inbound RTP bytes on ${who}`, seen: () => callMediaFacts(sdk, id) });
  await sleep(1000);
  const later = await callMediaFacts(sdk, id);
  assert.ok(later.bytesReceived > first.bytesReceived, `${who}: inbound bytes rise: ${show([first, later])}`);
}

e2eTest('incoming call from a sipp UAC -> INCOMING_CALL -> answer -> ESTABLISHED, audio from sipp (-rtp_echo) arrives; caller BYE -> FINISH', async (env) => {
  const { sdk, backend, callgate } = env;
  const reg = await registrar();
  let caller;
  try {
    await establish(sdk, callgate, {
      appKey: 'backendApp',
      sipOptions: { login: '3000', password: 'secret', domain: '127.0.0.1', port: String(reg.port), registerRequired: true },
    });
    await sdk.waitForEvent('REGISTERED');
    await watchIncoming(sdk);
    caller = await startSipp('uac_call.xml', { remote: `127.0.0.1:${SIP_PORT}`, service: '3000', pauseMs: 6000, rtpEcho: true });
    const id = await waitIncoming(sdk);
    const hook = await backend.waitForHook('OnCallEvent');
    assert.equal(hook.body.callId, id);
    assert.equal(hook.body.caller, 'sipp');
    await waitCallStatus(sdk, id, 'RING');
    await answerCall(sdk, id);
    await waitCallStatus(sdk, id, 'ESTABLISHED');
    // The page's audio goes to sipp, which echoes it back through the bridge.
    await assertInboundRising(sdk, id, 'the answering page');
    await waitCallStatus(sdk, id, 'FINISH');
    const events = await callEvents(sdk, id);
    assert.deepEqual(events.filter((s) => s !== 'PENDING'), ['RING', 'ESTABLISHED', 'FINISH'], show(events));
    assert.equal(await caller.wait(), 0, `sipp caller passed: ${caller.stderr()}`);
    await backend.waitForHook('answer', (r) => r.body.callId === id);
    await backend.waitForHook('CallStatusEvent', (r) => r.body.callId === id && r.body.status === 'FINISH');
  } finally {
    caller?.stop();
    reg.stop();
  }
}, { callgate: { extraToml: SIP_TOML } });

e2eTest('a backend refusing OnCallEvent -> the sipp caller gets 403 and the page no call', async (env) => {
  const { sdk, backend, callgate } = env;
  backend.on('connect', (r) => reply.json(200, { ...r.body, restClientConfig: { OnCallEvent: { restOnError: 'FAIL' } } }));
  backend.on('OnCallEvent', () => reply.json(403, { status: 403, reason: 'no calls tonight' }));
  const reg = await registrar();
  let caller;
  try {
    await establish(sdk, callgate, {
      appKey: 'backendApp',
      sipOptions: { login: '3000', password: 'secret', domain: '127.0.0.1', port: String(reg.port), registerRequired: true },
    });
    await sdk.waitForEvent('REGISTERED');
    await watchIncoming(sdk);
    caller = await startSipp('uac_call_expect_403.xml', { remote: `127.0.0.1:${SIP_PORT}`, service: '3000' });
    assert.equal(await caller.wait(), 0, `sipp got 403: ${caller.stderr()}`);
    assert.match(caller.messages(), /SIP\/2\.0 403 Forbidden/);
    await sdk.waitForEvent('WARN');
    assert.deepEqual(await sdk.page.evaluate(() => window.__e2e.incoming), [], 'no INCOMING_CALL');
  } finally {
    caller?.stop();
    reg.stop();
  }
}, { callgate: { extraToml: SIP_TOML } });

e2eTest('two pages registered to Kamailio (3000, 3001) call each other: ESTABLISHED on both, inbound audio rising on both, hangup -> FINISH on both', async (env) => {
  const { sdk, callgate } = env;
  const kamailio = await startKamailio();
  try {
    // The domain carries Kamailio's port: its `uri == myself` check compares host and port.
    const sip = (login) => ({ login, password: `secret${login}`, domain: `127.0.0.1:${kamailio.port}`, registerRequired: true });
    await establish(sdk, callgate, { appKey: 'backendApp', sipOptions: sip('3000') });
    await sdk.waitForEvent('REGISTERED');
    const callee = await env.newPage();
    await establish(callee, callgate, { appKey: 'backendApp', sipOptions: sip('3001') });
    await callee.waitForEvent('REGISTERED');
    await watchIncoming(callee);

    const out = await startCall(sdk, '3001');
    const inc = await waitIncoming(callee);
    await waitCallStatus(callee, inc, 'RING');
    await waitCallStatus(sdk, out, 'RING');
    await answerCall(callee, inc);
    await waitCallStatus(callee, inc, 'ESTABLISHED');
    await waitCallStatus(sdk, out, 'ESTABLISHED');
    await assertInboundRising(sdk, out, 'the calling page (3000)');
    await assertInboundRising(callee, inc, 'the called page (3001)');
    await hangup(sdk, out);
    await waitCallStatus(sdk, out, 'FINISH');
    await waitCallStatus(callee, inc, 'FINISH');
  } catch (e) {
    console.error(`--- kamailio log (last 4000 chars):\n${kamailio.log().slice(-4000)}`);
    throw e;
  } finally {
    kamailio.stop();
  }
}, { callgate: { extraToml: SIP_TOML }, timeout: 90_000 });
