// Session resume with the SDK's own Phone Min demo page (examples/demo/sip/phone, unmodified):
// it always connects with keepAlive: true and shows the authToken of its session; "Disconnect"
// closes the WebSocket, "Connect with token" connects again with only {authToken, keepAlive}.
// callgate keeps the session (and its SIP registration to the embedded registrar) after the
// socket goes and the token resumes it: the page shows REGISTERED again without a new REGISTER
// hook, and a call to 1001 from another SDK page rings on the resumed page, which answers.
import assert from 'node:assert/strict';
import { e2eSuite } from '../lib/fixture.js';
import { startDemoServer } from '../lib/demo-server.js';
import { callEvents, hangup, startCall, waitCallStatus } from '../lib/calls.js';
import { establish } from '../lib/streams.js';
import { show } from '../lib/util.js';

const e2eTest = e2eSuite();

const regStatus = (page, want) =>
  page.waitForFunction((want) => document.querySelector('#regStatus')?.textContent === want, want, { timeout: 15_000 });

e2eTest('Phone demo: Disconnect, then "Connect with token" resumes the kept session: REGISTERED again, and a call to it rings and is answered there', async (env) => {
  const { callgate, sdk, backend } = env;
  const demo = await startDemoServer({ recordsTo: callgate.httpUrl });
  try {
    const page = sdk.page;
    await page.goto(`${demo.url}/examples/demo/sip/phone/phone.html`);
    // The form and the controls are loaded by the page's script (jQuery .load).
    await page.waitForFunction(() => document.querySelector('#connectBtn')?.textContent === 'Connect', null, { timeout: 15_000 });
    await page.fill('#urlServer', `${callgate.wsUrl}/`);
    await page.fill('#sipLogin', '1001');
    await page.fill('#sipAuthenticationName', '1001');
    await page.fill('#sipPassword', 'pw1001');
    await page.fill('#sipDomain', 'callgate.local');
    // The page requires every field; a proxy that is the domain itself still means the
    // embedded registrar (docs/registrar.md).
    await page.fill('#sipOutboundProxy', 'callgate.local');
    await page.fill('#sipPort', '5060');
    await page.click('#connectBtn');
    await regStatus(page, 'REGISTERED');
    const token = await page.inputValue('#authToken');
    assert.ok(token, 'the page shows the session\'s authToken');

    await page.click('#connectBtn'); // "Disconnect": the page closes its WebSocket
    await regStatus(page, 'DISCONNECTED');
    await page.click('#connectTokenBtn');
    await regStatus(page, 'REGISTERED');
    assert.equal(await page.inputValue('#authToken'), token, 'the same session, the same token');

    // 1002 on another SDK page calls 1001 through the embedded registrar: the kept
    // registration routes it to the resumed page.
    const b = await env.newPage();
    await establish(b, callgate, {
      appKey: 'backendApp',
      sipOptions: { login: '1002', password: 'pw1002', domain: 'callgate.local', port: '5060', registerRequired: true },
    });
    await b.waitForEvent('REGISTERED');
    const id = await startCall(b, '1001');
    await page.waitForFunction(() => document.querySelector('#callStatus')?.textContent === 'RING', null, { timeout: 15_000 });
    await page.click('#answerBtn');
    await waitCallStatus(b, id, 'ESTABLISHED');
    await page.waitForFunction(() => document.querySelector('#callStatus')?.textContent === 'ESTABLISHED', null, { timeout: 15_000 });
    await hangup(b, id);
    await waitCallStatus(b, id, 'FINISH');
    await page.waitForFunction(() => document.querySelector('#callStatus')?.textContent === 'FINISH', null, { timeout: 15_000 });
    const events = await callEvents(b, id);
    assert.deepEqual(events.filter((s) => s !== 'PENDING' && s !== 'TRYING'), ['RING', 'ESTABLISHED', 'FINISH'], show(events));
    // The page's session (defaultApp, EchoApp) is not the backend's; 1002's hooks are.
    assert.ok(backend.summary().some((r) => r.hook === 'call'), 'the caller\'s call hook reached the backend');
  } finally {
    await demo.close();
  }
});
