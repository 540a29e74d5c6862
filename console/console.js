// The callgate console: plain JS over the official @flashphoner/websdk (window.Flashphoner),
// served by callgate itself. No framework, nothing fetched from elsewhere.
'use strict';

const $ = (id) => document.getElementById(id);
const state = { session: null, publisher: null, player: null, call: null, feed: null, hooks: [] };
// What the tests read: every session, stream and call status seen, each hook record, and the
// page's state (its SDK session, streams and call).
window.__console = { events: [], hooks: state.hooks, state };

function log(listId, text) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  const list = $(listId);
  list.appendChild(li);
  list.scrollTop = list.scrollHeight;
}

function record(kind, name, info) {
  window.__console.events.push({ kind, name, info: info ?? null, at: Date.now() });
}

function connected(on) {
  $('connect').disabled = on;
  $('disconnect').disabled = !on;
  for (const id of ['publish', 'play', 'sendData', 'call']) $(id).disabled = !on;
  if (!on) for (const id of ['unpublish', 'stopPlay', 'answer', 'hangup', 'hold', 'unhold', 'sendDtmf']) $(id).disabled = true;
}

async function loadConfig() {
  let cfg = { wsPort: 8080, wssPort: null, sdk: typeof Flashphoner === 'object', hookLog: 'loopback' };
  try {
    const r = await fetch('/console/config.json');
    if (r.ok) cfg = await r.json();
  } catch (e) {
    /* the defaults above */
  }
  const secure = location.protocol === 'https:' && cfg.wssPort;
  $('server').value = secure ? `wss://${location.hostname}:${cfg.wssPort}` : `ws://${location.hostname}:${cfg.wsPort}`;
  const access = {
    token: 'The hook log needs the admin token ([console] admin_token).',
    loopback: 'No admin token is configured: the hook log is open to this host (loopback) only; the token field may stay empty.',
    off: `The hook log is off: ${cfg.hookLogReason || ''}`,
  };
  $('hookAccess').textContent = access[cfg.hookLog] || '';
  state.hookLog = cfg.hookLog;
  if (typeof Flashphoner !== 'object' || !cfg.sdk) {
    $('sdkMissing').hidden = false;
    $('connect').disabled = true;
    return false;
  }
  return true;
}

// --- Connect -------------------------------------------------------------------------------

function connect() {
  const S = Flashphoner.constants.SESSION_STATUS;
  const opts = { urlServer: $('server').value.trim(), appKey: $('appKey').value.trim() || 'defaultApp' };
  const login = $('sipLogin').value.trim();
  if (login) {
    opts.sipOptions = {
      login,
      password: $('sipPassword').value,
      domain: $('sipDomain').value.trim(),
      port: $('sipPort').value.trim() || '5060',
      outboundProxy: $('sipOutboundProxy').value.trim() || undefined,
      registerRequired: $('sipRegister').checked,
    };
  }
  $('sessionStatus').textContent = 'connecting';
  $('connect').disabled = true;
  const session = Flashphoner.createSession(opts);
  state.session = session;
  for (const name of new Set(Object.values(S))) {
    session.on(name, (...args) => {
      const arg = args.find((a) => a !== session);
      if (name === S.APP_DATA) {
        log('dataLog', `received: ${JSON.stringify(arg?.payload ?? arg)}`);
        record('session', name, arg?.payload ?? null);
        return;
      }
      if (name === S.INCOMING_CALL) {
        onIncoming(arg);
        return;
      }
      if (name === S.REGISTERED || name === S.UNREGISTERED) {
        $('regStatus').textContent = name;
      }
      const info = arg && typeof arg.info === 'string' ? arg.info : session.getInfo?.();
      record('session', name, info);
      if ([S.ESTABLISHED, S.DISCONNECTED, S.FAILED, S.WARN].includes(name)) {
        $('sessionStatus').textContent = name;
        $('sessionInfo').textContent = info || '';
      }
      if (name === S.ESTABLISHED) connected(true);
      if (name === S.DISCONNECTED || name === S.FAILED) {
        connected(false);
        state.session = null;
      }
    });
  }
}

// --- Streaming -----------------------------------------------------------------------------

function watchStream(stream, role) {
  const S = Flashphoner.constants.STREAM_STATUS;
  for (const status of new Set(Object.values(S))) {
    stream.on(status, (s) => {
      const info = s.getInfo?.() || '';
      record(role, status, info);
      $(`${role}Status`).textContent = status + (info ? ` (${info})` : '');
      log('streamLog', `${role} ${stream.name()}: ${status}${info ? ` — ${info}` : ''}`);
      if ([S.STOPPED, S.UNPUBLISHED, S.FAILED].includes(status)) {
        $(role === 'publish' ? 'unpublish' : 'stopPlay').disabled = true;
        // Once this stream is over, another may start (if the session still lives).
        $(role).disabled = !state.session;
      }
    });
  }
  stream.on(Flashphoner.constants.STREAM_EVENT, (ev) => {
    record(role, 'STREAM_EVENT', ev.type);
    log('streamLog', `${role} ${stream.name()}: event ${ev.type} ${JSON.stringify(ev.payload ?? {})}`);
  });
}

function publish() {
  const stream = state.session.createStream({ name: $('publishName').value.trim(), display: $('localVideo'), cacheLocalResources: false });
  state.publisher = stream;
  watchStream(stream, 'publish');
  stream.publish();
  $('publish').disabled = true; // one stream at a time: Stop first
  $('unpublish').disabled = false;
}

function play() {
  const stream = state.session.createStream({ name: $('playName').value.trim(), display: $('remoteVideo') });
  state.player = stream;
  watchStream(stream, 'play');
  stream.play();
  $('play').disabled = true;
  $('stopPlay').disabled = false;
}

// --- Data ------------------------------------------------------------------------------------

function sendData() {
  const text = $('dataPayload').value;
  let payload;
  try {
    payload = JSON.parse(text);
  } catch (e) {
    payload = text;
  }
  state.session.sendData(payload).then(
    () => log('dataLog', `sent: ${JSON.stringify(payload)} (accepted)`),
    (e) => log('dataLog', `sent: ${JSON.stringify(payload)} refused: ${e?.info || e?.getInfo?.() || 'no reason'}`),
  );
}

// --- Phone -----------------------------------------------------------------------------------

function callButtons(status) {
  const C = Flashphoner.constants.CALL_STATUS;
  const live = ![C.FINISH, C.FAILED].includes(status);
  $('hangup').disabled = !live;
  if (status !== C.HOLD) state.holding = false;
  $('hold').disabled = status !== C.ESTABLISHED;
  // HOLD also comes when the peer holds this call: only the side that held can unhold.
  $('unhold').disabled = !(status === C.HOLD && state.holding);
  $('sendDtmf').disabled = ![C.ESTABLISHED, C.HOLD].includes(status);
  $('answer').disabled = !(live && state.call && state.call.incoming && status === C.RING);
  $('call').disabled = live || !state.session;
}

function watchCall(call) {
  const C = Flashphoner.constants.CALL_STATUS;
  state.call = call;
  for (const status of new Set(Object.values(C))) {
    call.on(status, (c) => {
      const info = c?.getInfo?.() || '';
      record('call', status, info);
      $('callStatus').textContent = status;
      $('callInfo').textContent = info || (status === C.HOLD && !state.holding ? 'held by the peer' : '');
      callButtons(status);
    });
  }
}

// Calling and answering: the camera too when "Video" is ticked (the SIP bridge carries VP8/H.264
// video: docs/media.md "Video in calls"), as the SDK's Phone Video demo does; unticked, audio only.
// A fresh object each time: the SDK's answer() sets constraints.video = false when the offer has no
// video. (The SDK's answer() takes receiveVideo from the incoming call itself, not from these.)
function mediaOptions() {
  const video = $('callVideo').checked;
  return {
    localVideoDisplay: $('callLocal'),
    remoteVideoDisplay: $('callRemote'),
    constraints: { audio: true, video },
    receiveAudio: true,
    receiveVideo: video,
  };
}

function call() {
  const c = state.session.createCall({ callee: $('callee').value.trim(), visibleName: $('sipLogin').value.trim() || 'console', ...mediaOptions() });
  watchCall(c);
  c.call();
  $('call').disabled = true;
  $('hangup').disabled = false;
}

function onIncoming(c) {
  watchCall(c);
  c.incoming = true;
  record('call', 'INCOMING', c.caller());
  $('callStatus').textContent = `incoming from ${c.caller()}`;
  $('answer').disabled = false;
  $('hangup').disabled = false;
}

// --- Hook log --------------------------------------------------------------------------------

// Session ids are "/<client addr>/<server addr>-<uuid>": the uuid's first group tells them apart
// (the whole id is the cell's tooltip).
function shortSession(id) {
  if (!id) return '';
  const m = /-([0-9a-f]{8})-[0-9a-f-]+$/i.exec(id);
  return m ? m[1] : id.slice(-8);
}

function hookRow(h) {
  const tr = document.createElement('tr');
  tr.className = h.decision;
  const cells = [
    new Date(h.time).toLocaleTimeString(),
    h.app,
    h.method,
    shortSession(h.session),
    h.status ?? (h.backend === 'in-process' ? 'in-process' : '-'),
    h.latencyMs,
    h.decision,
    h.error ?? '',
  ];
  for (const c of cells) {
    const td = document.createElement('td');
    td.textContent = String(c);
    td.title = String(c);
    tr.appendChild(td);
  }
  if (h.session) tr.children[3].title = h.session;
  tr.addEventListener('click', () => {
    $('hookDetail').textContent = JSON.stringify({ sent: h.body, status: h.status, answer: h.answer, error: h.error, attempts: h.attempts, verdict: h.verdict }, null, 2);
  });
  const rows = $('hookRows');
  rows.appendChild(tr);
  while (rows.children.length > 500) rows.removeChild(rows.firstChild);
  rows.scrollTop = rows.scrollHeight;
}

function openFeed() {
  closeFeed();
  const token = $('hookToken').value.trim();
  const src = new EventSource(`/console/hooks${token ? `?token=${encodeURIComponent(token)}` : ''}`);
  state.feed = src;
  $('hookStatus').textContent = 'connecting';
  $('hookOpen').disabled = true;
  $('hookClose').disabled = false;
  src.addEventListener('open', () => ($('hookStatus').textContent = 'open'));
  src.addEventListener('hook', (e) => {
    const h = JSON.parse(e.data);
    state.hooks.push(h);
    hookRow(h);
  });
  src.addEventListener('lagged', (e) => {
    const { missed } = JSON.parse(e.data);
    hookRow({ time: Date.now(), app: '', method: `(${missed} records lost: this page read too slowly)`, decision: 'error', latencyMs: '' });
  });
  src.onerror = () => {
    // EventSource does not expose the status: ask once, to show why (401/403/503).
    if (src.readyState === EventSource.CLOSED) {
      fetch(src.url).then(async (r) => {
        $('hookStatus').textContent = r.ok ? 'closed' : `refused: ${r.status} ${await r.text()}`;
      }, () => ($('hookStatus').textContent = 'closed'));
      $('hookOpen').disabled = false;
      $('hookClose').disabled = true;
    } else {
      $('hookStatus').textContent = 'reconnecting';
    }
  };
}

function closeFeed() {
  if (state.feed) state.feed.close();
  state.feed = null;
  $('hookStatus').textContent = 'closed';
  $('hookOpen').disabled = false;
  $('hookClose').disabled = true;
}

// --- Wiring ----------------------------------------------------------------------------------

async function main() {
  const sdk = await loadConfig();
  $('hookOpen').onclick = openFeed;
  $('hookClose').onclick = closeFeed;
  if (!sdk) return;
  await Flashphoner.init({});
  // The bundle has no version call: say what it found in this browser.
  $('sdkInfo').textContent = `official SDK loaded (media providers: ${Flashphoner.getMediaProviders().join(', ') || 'none'})`;
  $('connect').onclick = connect;
  $('disconnect').onclick = () => state.session && state.session.disconnect();
  $('publish').onclick = publish;
  $('unpublish').onclick = () => state.publisher && state.publisher.stop();
  $('play').onclick = play;
  $('stopPlay').onclick = () => state.player && state.player.stop();
  $('sendData').onclick = sendData;
  $('call').onclick = call;
  $('answer').onclick = () => state.call && state.call.answer(mediaOptions());
  $('hangup').onclick = () => state.call && state.call.hangup();
  $('hold').onclick = () => {
    if (!state.call) return;
    state.holding = true;
    $('hold').disabled = true;
    state.call.hold();
  };
  $('unhold').onclick = () => {
    if (!state.call) return;
    $('unhold').disabled = true;
    state.call.unhold();
  };
  $('sendDtmf').onclick = () => state.call && state.call.sendDTMF($('dtmf').value.trim(), 'RFC2833');
  // The log opens by itself where no token is needed.
  if (state.hookLog === 'loopback') openFeed();
  document.body.dataset.ready = 'true';
}

main();
