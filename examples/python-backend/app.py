"""callgate example backend (FastAPI): an allow-list of stream names, rename on publish, event log.

    ALLOWED_STREAMS=lobby,stage EVENT_LOG=events.jsonl \
        python3 -m uvicorn app:app --host 127.0.0.1 --port 3001

Hooks arrive as POST {url}/{method} (docs/hooks.md); this backend serves them under /hooks:

- connect: accepted; the answer configures the session (restClientConfig): publishStream and
  playStream are refused on a non-200 (restOnError FAIL), and publishStream's answer may rename
  the stream (restPolicy OVERWRITE, restOverwrite "name").
- publishStream: a name outside ALLOWED_STREAMS is refused with 403 and a reason the client gets
  as its `info`; an allowed one is published as "<user>-<name>" (the user is the client's
  custom.user, else the appKey), so two publishers never fight over one name.
- playStream: allowed for a listed name or "<user>-<listed name>"; others get 403 + reason.
- every event (ConnectionStatusEvent, StreamStatusEvent, ...): one JSON line in EVENT_LOG,
  duplicates (a retried event, by its eventId) written once.
- with WEBHOOK_SECRETS (callgate's [hooks] webhook_secrets), a hook whose Standard Webhooks
  signature does not verify is refused with 401.
"""

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import time
from collections import OrderedDict

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

log = logging.getLogger("python-backend")
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

ALLOWED = frozenset(n.strip() for n in os.environ.get("ALLOWED_STREAMS", "lobby,stage").split(",") if n.strip())
EVENT_LOG = os.environ.get("EVENT_LOG", "events.jsonl")
# Standard Webhooks secrets (`whsec_<base64>`, as in callgate's [hooks] webhook_secrets): when
# set, a hook whose signature does not verify with one of them is refused (docs/hooks.md §1).
def _webhook_keys(text: str) -> list:
    keys = []
    for secret in (s.strip() for s in text.split(",")):
        if not secret:
            continue
        try:
            keys.append(base64.b64decode(secret.removeprefix("whsec_"), validate=True))
        except ValueError:
            raise SystemExit(f"WEBHOOK_SECRETS: {secret[:10]}... is not whsec_<base64>") from None
    return keys


WEBHOOK_KEYS = _webhook_keys(os.environ.get("WEBHOOK_SECRETS", ""))
MAX_CLOCK_SKEW_S = 300
USER_RE = re.compile(r"^[A-Za-z0-9_]{1,32}$")
MAX_SEEN_EVENTS = 10_000
MAX_SESSIONS = 100_000

# The event hooks of docs/hooks.md §2.
EVENTS = frozenset({
    "ConnectionStatusEvent", "RegistrationStatusEvent", "CallStatusEvent", "TransferStatusEvent",
    "MessageStatusEvent", "SubscriptionStatusEvent", "XcapStatusEvent", "StreamStatusEvent",
    "DataStatusEvent", "BugReportStatusEvent", "StreamKeepAliveEvent", "sendStreamEvent", "StreamEvent",
    "SessionDebugStatusEvent", "ErrorEvent", "ErrorStatusEvent",
})

app = FastAPI(title="callgate example backend (Python)")
# sessionId -> stream name prefix (the user), set by connect.
sessions: "OrderedDict[str, str]" = OrderedDict()
# eventIds already logged, oldest first.
seen_events: "OrderedDict[str, None]" = OrderedDict()


def refuse(status: int, reason: str) -> JSONResponse:
    """A refusal callgate passes on to the client as its `info` (docs/hooks.md §1)."""
    return JSONResponse({"status": status, "reason": reason}, status_code=status)


def signature_problem(headers, body: bytes):
    """Why a hook's Standard Webhooks signature does not verify, or None when it does."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signature = headers.get("webhook-signature")
    if not msg_id or not timestamp or not signature:
        return "Missing signature"
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_CLOCK_SKEW_S:
        return "Stale signature"
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    for key in WEBHOOK_KEYS:
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        for part in signature.split(" "):
            version, _, sig = part.partition(",")
            if version == "v1" and hmac.compare_digest(sig, expected):
                return None
    return "Bad signature"


def prefix_for(body: dict) -> str:
    user = sessions.get(body.get("sessionId", ""))
    if user:
        return user
    return str(body.get("appKey") or "app")


def is_allowed_play(name: str) -> bool:
    if name in ALLOWED:
        return True
    user, sep, base = name.partition("-")
    return bool(sep) and USER_RE.match(user) is not None and base in ALLOWED


def log_event(method: str, body: dict) -> None:
    event_id = body.get("eventId")
    if isinstance(event_id, str):
        if event_id in seen_events:
            log.info("hook %s session=%s eventId=%s: a duplicate, not logged again", method, body.get("sessionId"), event_id)
            return
        seen_events[event_id] = None
        if len(seen_events) > MAX_SEEN_EVENTS:
            seen_events.popitem(last=False)
    line = json.dumps({"receivedAt": time.time(), "method": method, "body": body}, separators=(",", ":"))
    with open(EVENT_LOG, "a", encoding="utf-8") as f:
        f.write(line + "\n")


@app.get("/health")
async def health() -> dict:
    return {"ok": True, "allowedStreams": sorted(ALLOWED)}


@app.post("/hooks/{method}")
async def hook(method: str, request: Request):
    raw = await request.body()
    if WEBHOOK_KEYS:
        problem = signature_problem(request.headers, raw)
        if problem:
            log.warning("hook %s: %s -> 401", method, problem)
            return refuse(401, problem)
    try:
        body = json.loads(raw) if raw else {}
    except ValueError as e:
        log.warning("hook %s: bad request: %s", method, e)
        return refuse(400, f"Bad request: {e}")
    if not isinstance(body, dict):
        log.warning("hook %s: bad request: the body is not a JSON object", method)
        return refuse(400, "Bad request: the body is not a JSON object")
    session = body.get("sessionId", "-")

    if method == "connect":
        custom = body.get("custom") if isinstance(body.get("custom"), dict) else {}
        user = custom.get("user")
        if isinstance(user, str) and USER_RE.match(user):
            sessions[session] = user
            if len(sessions) > MAX_SESSIONS:
                sessions.popitem(last=False)
        answer = dict(body)
        answer["restClientConfig"] = {
            "publishStream": {"restOnError": "FAIL", "restPolicy": "OVERWRITE", "restOverwrite": "name"},
            "playStream": {"restOnError": "FAIL"},
        }
        log.info("hook connect session=%s user=%s -> 200", session, user if session in sessions else "-")
        return answer

    if method == "publishStream":
        name = body.get("name")
        if not isinstance(name, str) or name not in ALLOWED:
            log.info("hook publishStream session=%s name=%r -> 403", session, name)
            return refuse(403, f"Stream name not allowed: {name}")
        renamed = f"{prefix_for(body)}-{name}"
        log.info("hook publishStream session=%s name=%r -> 200 as %r", session, name, renamed)
        # Under OVERWRITE only the restOverwrite fields of the answer are taken: {"name"} is enough.
        return {"name": renamed}

    if method == "playStream":
        name = body.get("name")
        if not isinstance(name, str) or not is_allowed_play(name):
            log.info("hook playStream session=%s name=%r -> 403", session, name)
            return refuse(403, f"Stream name not allowed: {name}")
        log.info("hook playStream session=%s name=%r -> 200", session, name)
        return body

    if method in EVENTS:
        log_event(method, body)
        if method == "ConnectionStatusEvent" and body.get("status") in ("DISCONNECTED", "FAILED"):
            sessions.pop(session, None)
        log.info("hook %s session=%s status=%s -> 200", method, session, body.get("status"))
        # An event answer changes nothing under NOTIFY: {} is enough.
        return {}

    # Every other invocation (OnDataEvent, hangup, OnCallEvent, ...) is allowed as it is.
    log.info("hook %s session=%s -> 200", method, session)
    return body
