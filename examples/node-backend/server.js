#!/usr/bin/env node
// callgate example backend (Node 20, built-in modules only): token auth on `connect`, SIP
// credentials injected from this backend's own table and hidden from the page with
// `clientExclude`, and click-to-call through callgate's REST API (`/rest-api/call/startup`).
//
//   node server.js                          # config.json beside this file, port 3000
//   CONFIG=my.json PORT=3100 node server.js
//
// Hooks arrive as POST {url}/{method} (docs/hooks.md); this backend serves them under /hooks.
// Its own endpoints:
//   POST /click-to-call   Authorization: Bearer <token>, body {"callee": "3001"}  -> {"callId"}
//   GET  /click-to-call/<callId>   the CallStatusEvent statuses seen for that call
//   GET  /health
"use strict";

const http = require("node:http");
const fs = require("node:fs");
const path = require("node:path");
const crypto = require("node:crypto");

const configPath = process.env.CONFIG || path.join(__dirname, "config.json");
const config = loadConfig(configPath);
const port = Number(process.env.PORT || config.port || 3000);
const host = process.env.HOST || config.host || "127.0.0.1";
const restUrl = (process.env.CALLGATE_REST_URL || config.callgateRestUrl || "http://127.0.0.1:8081").replace(/\/+$/, "");

// Standard Webhooks secrets (`whsec_<base64>`, as in callgate's [hooks] webhook_secrets): when
// set, a hook whose signature does not verify with one of them is refused (docs/hooks.md §1).
const webhookKeys = (process.env.WEBHOOK_SECRETS ? process.env.WEBHOOK_SECRETS.split(",") : config.webhookSecrets || [])
  .map((s) => s.trim())
  .filter(Boolean)
  .map((s) => {
    const b64 = s.replace(/^whsec_/, "");
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) {
      console.error(`webhook secret ${s.slice(0, 10)}... is not whsec_<base64>`);
      process.exit(2);
    }
    return Buffer.from(b64, "base64");
  });
const MAX_CLOCK_SKEW_S = 300;

// The SIP fields this backend sets on every session, whatever the client sent, and hides from it.
const SIP_FIELDS = ["sipLogin", "sipAuthenticationName", "sipPassword", "sipDomain", "sipOutboundProxy", "sipPort",
  "sipRegisterRequired"];
const HIDDEN = SIP_FIELDS.filter((f) => f !== "sipRegisterRequired").join(",");
const MAX_BODY = 1 << 20;
const MAX_TRACKED_CALLS = 10000;
const MAX_SESSIONS = 100000;

// sessionId -> user name, for sessions this backend let in.
const sessions = new Map();
// callId -> {user, statuses: [..]} for calls started through /click-to-call.
const calls = new Map();

function loadConfig(file) {
  let cfg;
  try {
    cfg = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    console.error(`cannot read the config ${file}: ${e.message}`);
    process.exit(2);
  }
  const problems = [];
  if (typeof cfg.appKey !== "string" || !cfg.appKey) problems.push("appKey: a non-empty string");
  if (!cfg.tokens || typeof cfg.tokens !== "object") problems.push("tokens: an object {token: user}");
  if (!cfg.users || typeof cfg.users !== "object") problems.push("users: an object {user: {sipLogin, ...}}");
  for (const [token, user] of Object.entries(cfg.tokens || {})) {
    if (!cfg.users || !cfg.users[user]) problems.push(`tokens.${token}: user ${JSON.stringify(user)} is not in users`);
  }
  for (const [name, u] of Object.entries(cfg.users || {})) {
    for (const f of ["sipLogin", "sipPassword", "sipDomain"]) {
      if (typeof u[f] !== "string" || !u[f]) problems.push(`users.${name}.${f}: a non-empty string`);
    }
    if (u.callee !== undefined && (typeof u.callee !== "string" || !u.callee)) {
      problems.push(`users.${name}.callee: a non-empty string when set`);
    }
  }
  if (problems.length) {
    console.error(`invalid config ${file}:\n  ${problems.join("\n  ")}`);
    process.exit(2);
  }
  return cfg;
}

// The full SIP account of a user: every field set, so nothing the client sent survives.
function sipAccount(user) {
  const u = config.users[user];
  return {
    sipLogin: u.sipLogin,
    sipAuthenticationName: u.sipAuthenticationName || u.sipLogin,
    sipPassword: u.sipPassword,
    sipDomain: u.sipDomain,
    sipOutboundProxy: u.sipOutboundProxy || u.sipDomain,
    sipPort: Number(u.sipPort || 5060),
    sipRegisterRequired: Boolean(u.sipRegisterRequired),
  };
}

// Compares in constant time (the token list is short: every entry is tried).
function userForToken(token) {
  if (typeof token !== "string" || !token) return null;
  const got = Buffer.from(token);
  let found = null;
  for (const [known, user] of Object.entries(config.tokens)) {
    const want = Buffer.from(known);
    if (got.length === want.length && crypto.timingSafeEqual(got, want)) found = user;
  }
  return found;
}

// Why a hook's Standard Webhooks signature does not verify, or null when it does.
function signatureProblem(headers, body) {
  const id = headers["webhook-id"];
  const timestamp = headers["webhook-timestamp"];
  const signature = headers["webhook-signature"];
  if (!id || !timestamp || !signature) return "Missing signature";
  const ts = Number(timestamp);
  if (!Number.isInteger(ts) || Math.abs(Date.now() / 1000 - ts) > MAX_CLOCK_SKEW_S) return "Stale signature";
  const signed = Buffer.concat([Buffer.from(`${id}.${timestamp}.`), body]);
  for (const key of webhookKeys) {
    const expected = crypto.createHmac("sha256", key).update(signed).digest();
    const ok = signature.split(" ").some((part) => {
      const [version, sig] = part.split(",", 2);
      if (version !== "v1" || !sig) return false;
      const got = Buffer.from(sig, "base64");
      return got.length === expected.length && crypto.timingSafeEqual(got, expected);
    });
    if (ok) return null;
  }
  return "Bad signature";
}

function send(res, status, body) {
  const text = body === undefined ? "" : JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

// A refusal callgate passes on to the client as its `info` (docs/hooks.md §1).
function refuse(res, status, reason) {
  send(res, status, { status, reason });
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new Error("body too large"));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function parseObject(raw) {
  if (raw.length === 0) return {};
  const v = JSON.parse(raw.toString("utf8"));
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error("the body is not a JSON object");
  return v;
}

function logHook(method, body, outcome) {
  const parts = [`hook ${method}`, `session=${body.sessionId || "-"}`];
  for (const k of ["status", "callId", "mediaSessionId", "info"]) {
    if (body[k] !== undefined && body[k] !== "") parts.push(`${k}=${JSON.stringify(body[k])}`);
  }
  parts.push(`-> ${outcome}`);
  console.log(parts.join(" "));
}

function onConnect(body, res) {
  const user = userForToken(body.custom && body.custom.token);
  if (!user) {
    logHook("connect", body, "403 Invalid token");
    return refuse(res, 403, "Invalid token");
  }
  if (sessions.size >= MAX_SESSIONS) sessions.delete(sessions.keys().next().value);
  sessions.set(body.sessionId, user);
  // Mirror the connection (as WCS asks), with this backend's SIP account over whatever the
  // client sent, and the session's hook settings.
  const answer = { ...body, ...sipAccount(user) };
  answer.restClientConfig = {
    // getUserData is built from ConnectionStatusEvent: the page never sees the account.
    ConnectionStatusEvent: { clientExclude: HIDDEN },
    // Calls of a session this backend let in may be refused (see onCall); with a `callee` in
    // the user's entry, the page's calls go there whatever it dialled (WCS's click-to-call).
    call: config.users[user].callee
      ? { restOnError: "FAIL", restPolicy: "OVERWRITE", restOverwrite: "callee" }
      : { restOnError: "FAIL" },
  };
  logHook("connect", body, `200 user=${user}`);
  send(res, 200, answer);
}

function onCall(body, res) {
  // REST-started calls (sessionId rest-api:<callId>) are ours; a session's call must be one we let in.
  const rest = typeof body.sessionId === "string" && body.sessionId.startsWith("rest-api:");
  if (!rest && body.sessionId && !sessions.has(body.sessionId)) {
    logHook("call", body, "403 Unknown session");
    return refuse(res, 403, "Unknown session");
  }
  const user = sessions.get(body.sessionId);
  const callee = user && config.users[user].callee;
  if (callee) {
    logHook("call", body, `200 callee=${JSON.stringify(callee)}`);
    return send(res, 200, { ...body, callee });
  }
  logHook("call", body, "200");
  send(res, 200, body);
}

function onEvent(method, body, res) {
  const call = method === "CallStatusEvent" && calls.get(body.callId);
  // A retried event comes again with the same eventId (docs/hooks.md §7.1): counted once.
  if (call && !call.eventIds.has(body.eventId)) {
    call.eventIds.add(body.eventId);
    call.statuses.push(body.status);
  }
  if (method === "ConnectionStatusEvent" && (body.status === "DISCONNECTED" || body.status === "FAILED")) {
    sessions.delete(body.sessionId);
  }
  logHook(method, body, "200");
  // An event answer changes nothing under NOTIFY: {} is enough.
  send(res, 200, {});
}

async function onClickToCall(req, res) {
  const auth = req.headers.authorization || "";
  const user = userForToken(auth.startsWith("Bearer ") ? auth.slice(7) : "");
  if (!user) return refuse(res, 401, "Invalid token");
  let body;
  try {
    body = parseObject(await readBody(req));
  } catch (e) {
    return refuse(res, 400, `Bad request: ${e.message}`);
  }
  const callee = body.callee;
  if (typeof callee !== "string" || !/^[A-Za-z0-9+*#._-]{1,64}$/.test(callee)) {
    return refuse(res, 400, "callee: 1-64 characters of A-Z a-z 0-9 + * # . _ -");
  }
  const callId = crypto.randomUUID();
  const account = sipAccount(user);
  const startup = {
    callId, callee, appKey: config.appKey, visibleName: account.sipLogin,
    hasAudio: true, hasVideo: false, ...account,
    // A REST call does not REGISTER (docs/hooks.md "REST-started calls").
    sipRegisterRequired: false,
  };
  if (calls.size >= MAX_TRACKED_CALLS) calls.delete(calls.keys().next().value);
  calls.set(callId, { user, statuses: [], eventIds: new Set() });
  const headers = { "Content-Type": "application/json" };
  if (config.callgateRestToken) headers.Authorization = `Bearer ${config.callgateRestToken}`;
  let answer;
  try {
    answer = await fetch(`${restUrl}/rest-api/call/startup`, {
      method: "POST", headers, body: JSON.stringify(startup), signal: AbortSignal.timeout(10000),
    });
  } catch (e) {
    calls.delete(callId);
    console.log(`click-to-call user=${user} callee=${callee}: callgate unreachable: ${e.message}`);
    return refuse(res, 502, `callgate unreachable: ${e.message}`);
  }
  const text = await answer.text();
  if (answer.status !== 200) {
    calls.delete(callId);
    console.log(`click-to-call user=${user} callee=${callee}: callgate answered ${answer.status} ${text}`);
    return refuse(res, 502, `callgate answered ${answer.status}: ${text}`);
  }
  console.log(`click-to-call user=${user} callee=${callee} callId=${callId}: started`);
  send(res, 200, { callId });
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://localhost");
  try {
    if (req.method === "GET" && url.pathname === "/health") return send(res, 200, { ok: true });
    if (req.method === "POST" && url.pathname === "/click-to-call") return await onClickToCall(req, res);
    const status = url.pathname.match(/^\/click-to-call\/([^/]+)$/);
    if (req.method === "GET" && status) {
      const call = calls.get(decodeURIComponent(status[1]));
      if (!call) return refuse(res, 404, "Unknown call");
      return send(res, 200, { callId: status[1], user: call.user, statuses: call.statuses });
    }
    const hook = url.pathname.match(/^\/hooks\/([A-Za-z]+)$/);
    if (req.method === "POST" && hook) {
      const method = hook[1];
      let raw;
      let body;
      try {
        raw = await readBody(req);
        body = parseObject(raw);
      } catch (e) {
        console.log(`hook ${method}: bad request: ${e.message}`);
        return refuse(res, 400, `Bad request: ${e.message}`);
      }
      const problem = webhookKeys.length ? signatureProblem(req.headers, raw) : null;
      if (problem) {
        logHook(method, body, `401 ${problem}`);
        return refuse(res, 401, problem);
      }
      if (method === "connect") return onConnect(body, res);
      if (method === "call") return onCall(body, res);
      if (method.endsWith("Event") && !method.startsWith("On")) return onEvent(method, body, res);
      // Other invocations (answer, hangup, OnDataEvent, OnCallEvent, ...): allowed as they are.
      logHook(method, body, "200");
      return send(res, 200, body);
    }
    refuse(res, 404, "Not found");
  } catch (e) {
    console.error(`${req.method} ${url.pathname}: ${e.stack || e}`);
    if (!res.headersSent) refuse(res, 500, "Internal error");
  }
});

server.listen(port, host, () => {
  const a = server.address();
  const signed = webhookKeys.length ? `, signatures checked with ${webhookKeys.length} key(s)` : "";
  console.log(`node-backend listening on http://${a.address}:${a.port} (hooks at /hooks, app ${config.appKey}, callgate REST ${restUrl}${signed})`);
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => server.close(() => process.exit(0)));
