//! The room app (docs/rooms.md) end to end in process: the real server, a real recording
//! backend behind `roomApp`, protocol clients sending the Room API's `sendData` commands as
//! `room-module.js` does, and str0m "browsers" publishing into a room for real.

use std::collections::VecDeque;

use callgate_tests::webrtc::FakeBrowser;
use callgate_tests::{start_server, Backend, Client, Reply};
use serde_json::{json, Map, Value};

fn app_toml(url: &str) -> String {
    format!("[apps.roomApp]\nurl = \"{url}\"\n")
}

/// A Room API session: `appKey: roomApp`, `custom: {login, token}` (room-module.js `connect`).
struct Member {
    c: Client,
    id: String,
    /// Frames received while waiting for another one.
    backlog: VecDeque<(String, Vec<Value>)>,
    ops: u32,
}

impl Member {
    async fn connect(server: &callgate_server::RunningServer, login: &str) -> Member {
        Member::connect_as(server, "roomApp", json!({"login": login, "token": "t"})).await
    }

    async fn connect_as(server: &callgate_server::RunningServer, app: &str, custom: Value) -> Member {
        let conn = json!({"appKey": app, "mediaProviders": ["WebRTC"], "clientVersion": "2.0", "custom": custom});
        let (c, data) = Client::establish(server, conn).await;
        let id = data["sessionId"].as_str().expect("sessionId").to_string();
        Member { c, id, backlog: VecDeque::new(), ops: 0 }
    }

    /// The next frame named `message` (its data); the frames skipped meanwhile are kept for
    /// later calls (room events and stream statuses race each other).
    async fn frame(&mut self, message: &str) -> Vec<Value> {
        if let Some(i) = self.backlog.iter().position(|(m, _)| m == message) {
            return self.backlog.remove(i).unwrap().1;
        }
        loop {
            let Some((m, data)) = self.c.next().await else {
                let tail: Vec<_> = self.c.seen.iter().rev().take(8).collect();
                panic!("{}: connection closed before {message}; last frames: {tail:?}", self.id)
            };
            if m == message {
                return data;
            }
            self.backlog.push_back((m, data));
        }
    }

    /// Room events received and not yet looked at.
    fn unread_events(&self) -> Vec<&Value> {
        self.backlog.iter().filter(|(m, _)| m == "OnDataEvent").map(|(_, d)| &d[0]).collect()
    }

    /// `sendData {operationId, payload:{command, options}}`; returns its `DataStatusEvent`.
    async fn command(&mut self, command: &str, options: Value) -> Map<String, Value> {
        self.send_data(json!({"command": command, "options": options})).await
    }

    async fn send_data(&mut self, payload: Value) -> Map<String, Value> {
        self.ops += 1;
        let op = format!("op-{}", self.ops);
        self.c.send("sendData", json!({"operationId": op, "payload": payload})).await;
        loop {
            let data = self.frame("DataStatusEvent").await;
            let st = data[0].as_object().unwrap().clone();
            if st["operationId"] == op.as_str() {
                return st;
            }
        }
    }

    async fn accepted(&mut self, command: &str, options: Value) {
        let st = self.command(command, options.clone()).await;
        assert_eq!(st["status"], "ACCEPTED", "{command} {options}: {st:?}");
    }

    async fn refused(&mut self, command: &str, options: Value) -> String {
        let st = self.command(command, options.clone()).await;
        assert_eq!(st["status"], "FAILED", "{command} {options}: {st:?}");
        st["info"].as_str().expect("a FAILED DataStatusEvent says why").to_string()
    }

    /// The next room event: `(roomName, name, info)`.
    async fn event(&mut self) -> (String, String, Value) {
        let data = self.frame("OnDataEvent").await;
        let ev = data[0].as_object().expect("OnDataEvent data[0] is an object");
        assert_eq!(ev["sessionId"], self.id.as_str(), "{ev:?}");
        assert!(ev["nodeId"].is_string() && ev["operationId"].is_string(), "{ev:?}");
        let p = &ev["payload"];
        let s = |k: &str| p[k].as_str().unwrap_or_else(|| panic!("payload.{k} is a string: {p}")).to_string();
        (s("roomName"), s("name"), p["info"].clone())
    }

    async fn expect_event(&mut self, room: &str, name: &str, info: Value) {
        let got = self.event().await;
        assert_eq!(got, (room.to_string(), name.to_string(), info), "{}", self.id);
    }

    /// Publishes `name` into `room` (`custom: {name: room}`, as `room.publish` does) from a
    /// connected fake browser; returns it once PUBLISHING.
    async fn publish(&mut self, id: &str, name: &str, room: Option<&str>) -> FakeBrowser {
        let b = FakeBrowser::publisher().await;
        let custom = room.map_or(json!({}), |r| json!({"name": r}));
        self.c
            .send(
                "publishStream",
                json!({"mediaSessionId": id, "name": name, "published": true, "hasVideo": true, "hasAudio": true,
                       "status": "PENDING", "record": false, "mediaProvider": "WebRTC", "sdp": b.offer,
                       "bitrate": 0, "minBitrate": 0, "maxBitrate": 0, "custom": custom}),
            )
            .await;
        loop {
            let data = self.frame("setRemoteSDP").await;
            if data[0] == id {
                b.accept(data[1].as_str().unwrap());
                break;
            }
        }
        self.stream_status(id, "PUBLISHING").await;
        b
    }

    async fn stream_status(&mut self, id: &str, want: &str) {
        loop {
            let data = self.frame("notifyStreamStatusEvent").await;
            if data[0]["mediaSessionId"] == id {
                assert_eq!(data[0]["status"], want, "{data:?}");
                return;
            }
        }
    }
}

/// A REST `/data/send` marker to `member` (payload `{roomName: room, name: "MARK"}`), read as its
/// next room event: nothing else was pushed to it before.
async fn mark(server: &callgate_server::RunningServer, member: &mut Member, room: &str) {
    let payload = json!({"roomName": room, "name": "MARK", "info": null});
    let body = json!({"sessionId": member.id, "payload": payload}).to_string();
    let (st, _) = callgate_tests::http_post(server, "/rest-api/data/send", &body, None).await;
    assert_eq!(st, 200);
    member.expect_event(room, "MARK", Value::Null).await;
}

#[tokio::test]
async fn join_state_joined_messages_leave_and_close() {
    let backend = Backend::start().await;
    let server = start_server(&app_toml(&backend.url("hooks"))).await;
    let mut alice = Member::connect(&server, "alice").await;
    let mut bob = Member::connect(&server, "bob").await;
    let mut carol = Member::connect(&server, "carol").await;

    alice.accepted("join", json!({"name": "r1", "record": false})).await;
    alice.expect_event("r1", "STATE", json!([])).await;
    // Every command went through the OnDataEvent hook first, as the SDK sent it.
    let hook = backend.wait_for("OnDataEvent", |b| b["payload"]["command"] == "join").await;
    assert_eq!(hook.body["payload"]["options"], json!({"name": "r1", "record": false}));
    assert_eq!(hook.body["appKey"], "roomApp");
    assert_eq!(hook.body["sessionId"], alice.id.as_str());

    bob.accepted("join", json!({"name": "r1"})).await;
    bob.expect_event("r1", "STATE", json!(["alice"])).await;
    alice.expect_event("r1", "JOINED", json!("bob")).await;
    carol.accepted("join", json!({"name": "r1"})).await;
    carol.expect_event("r1", "STATE", json!(["alice", "bob"])).await;
    alice.expect_event("r1", "JOINED", json!("carol")).await;
    bob.expect_event("r1", "JOINED", json!("carol")).await;

    // Messages go to the addressee only (room-module.js sends one per participant).
    let msg = |to: &str, text: &str| json!({"roomConfig": {"name": "r1"}, "to": to, "text": text});
    alice.accepted("sendMessage", msg("bob", "hi bob")).await;
    bob.expect_event("r1", "MESSAGE", json!({"from": "alice", "text": "hi bob"})).await;
    carol.accepted("sendMessage", msg("alice", "hi alice")).await;
    alice.expect_event("r1", "MESSAGE", json!({"from": "carol", "text": "hi alice"})).await;

    // Clear failures.
    assert_eq!(alice.refused("sendMessage", msg("nobody", "x")).await, "No participant nobody in room r1");
    // Joining again (a resumed session's page builds its room anew): STATE again, no JOINED.
    alice.accepted("join", json!({"name": "r1"})).await;
    alice.expect_event("r1", "STATE", json!(["bob", "carol"])).await;
    assert_eq!(alice.refused("leave", json!({"name": "r2"})).await, "Not joined to room r2");
    let mut other_alice = Member::connect(&server, "alice").await;
    assert_eq!(other_alice.refused("join", json!({"name": "r1"})).await, "Login alice is already in room r1");
    assert_eq!(
        other_alice.refused("sendMessage", msg("bob", "x")).await,
        "Not joined to room r1",
        "only members send to a room"
    );

    // Leave: LEFT to the others; leaving twice fails.
    bob.accepted("leave", json!({"name": "r1"})).await;
    alice.expect_event("r1", "LEFT", json!("bob")).await;
    carol.expect_event("r1", "LEFT", json!("bob")).await;
    assert_eq!(bob.refused("leave", json!({"name": "r1"})).await, "Not joined to room r1");
    assert_eq!(alice.refused("sendMessage", msg("bob", "x")).await, "No participant bob in room r1");

    // A session that closes leaves its rooms: LEFT to the others.
    drop(carol);
    alice.expect_event("r1", "LEFT", json!("carol")).await;
    // Bob may join again, and sees who is left.
    bob.accepted("join", json!({"name": "r1"})).await;
    bob.expect_event("r1", "STATE", json!(["alice"])).await;
    alice.expect_event("r1", "JOINED", json!("bob")).await;
    // Nothing else was pushed to anyone (every event above was the next one).
    assert!(alice.unread_events().is_empty() && bob.unread_events().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn published_streams_are_in_state_and_announced() {
    let backend = Backend::start().await;
    let server = start_server(&app_toml(&backend.url("hooks"))).await;
    let mut alice = Member::connect(&server, "alice").await;
    let mut bob = Member::connect(&server, "bob").await;

    alice.accepted("join", json!({"name": "r"})).await;
    alice.expect_event("r", "STATE", json!([])).await;
    // Named as room.publish names them: <room>-<login>-<4 hex>[-<name>].
    let _cam = alice.publish("a-1", "r-alice-1a2b", Some("r")).await;
    let _screen = alice.publish("a-2", "r-alice-3c4d-screen", Some("r")).await;
    // Not a room stream (no custom.name): never announced.
    let _plain = alice.publish("a-3", "plain", None).await;

    bob.accepted("join", json!({"name": "r"})).await;
    bob.expect_event(
        "r",
        "STATE",
        json!([{"login": "alice", "name": "r-alice-1a2b"}, {"login": "alice", "name": "r-alice-3c4d-screen"}]),
    )
    .await;
    alice.expect_event("r", "JOINED", json!("bob")).await;

    // Bob's own publish is announced to Alice once it is PUBLISHING, not to Bob.
    let _bob_cam = bob.publish("b-1", "r-bob-5e6f", Some("r")).await;
    alice.expect_event("r", "PUBLISHED", json!({"login": "bob", "name": "r-bob-5e6f"})).await;

    // Bob plays Alice's room stream like any other stream (room-module.js `play`), and media flows.
    let player = FakeBrowser::player().await;
    bob.c
        .send(
            "playStream",
            json!({"mediaSessionId": "b-play", "name": "r-alice-1a2b", "published": false, "hasVideo": true,
                   "hasAudio": true, "status": "PENDING", "record": false, "mediaProvider": "WebRTC",
                   "sdp": player.offer, "custom": {"name": "r"}}),
        )
        .await;
    loop {
        let data = bob.frame("setRemoteSDP").await;
        if data[0] == "b-play" {
            player.accept(data[1].as_str().unwrap());
            break;
        }
    }
    bob.stream_status("b-play", "PLAYING").await;
    player.wait("video frames", |s| s.video_frames >= 5).await;

    // Alice stops one stream: UNPUBLISHED to Bob (and his player of it is STOPPED).
    alice.c.send("unPublishStream", json!({"mediaSessionId": "a-1", "name": "r-alice-1a2b"})).await;
    alice.stream_status("a-1", "UNPUBLISHED").await;
    bob.expect_event("r", "UNPUBLISHED", json!({"login": "alice", "name": "r-alice-1a2b"})).await;
    bob.stream_status("b-play", "STOPPED").await;

    // A stream published into a room its session is not in is not announced there.
    let _elsewhere = alice.publish("a-4", "q-alice-7a8b", Some("q")).await;

    // Alice's session closes: her remaining room stream ends (UNPUBLISHED), then LEFT; the
    // non-room streams are never mentioned.
    drop(alice);
    bob.expect_event("r", "UNPUBLISHED", json!({"login": "alice", "name": "r-alice-3c4d-screen"})).await;
    bob.expect_event("r", "LEFT", json!("alice")).await;
    let mut carol = Member::connect(&server, "carol").await;
    carol.accepted("join", json!({"name": "r"})).await;
    carol.expect_event("r", "STATE", json!([{"login": "bob", "name": "r-bob-5e6f"}])).await;
    bob.expect_event("r", "JOINED", json!("carol")).await;
    assert!(bob.unread_events().is_empty(), "{:?}", bob.unread_events());
    server.shutdown().await;
}

#[tokio::test]
async fn the_backend_decides_and_bad_commands_get_clear_failures() {
    let backend = Backend::start().await;
    // The backend refuses (restOnError FAIL) any command naming room "vip".
    backend.answer(|m, req| match m {
        "connect" => {
            let mut b = req.as_object().unwrap().clone();
            b.insert("restClientConfig".into(), json!({"OnDataEvent": {"restOnError": "FAIL"}}));
            Reply::json(200, Value::Object(b))
        }
        "OnDataEvent" if req["payload"]["options"]["name"] == "vip" => {
            Reply::json(403, json!({"status": 403, "reason": "Not on the list"}))
        }
        _ => Reply::mirror(req),
    });
    let server = start_server(&app_toml(&backend.url("hooks"))).await;
    let mut alice = Member::connect(&server, "alice").await;
    let mut bob = Member::connect(&server, "bob").await;
    alice.accepted("join", json!({"name": "open"})).await;
    alice.expect_event("open", "STATE", json!([])).await;

    let st = bob.command("join", json!({"name": "vip"})).await;
    assert_eq!(st["status"], "FAILED", "{st:?}");
    assert!(st["info"].as_str().unwrap().contains("Not on the list"), "the backend's reason: {st:?}");

    // Malformed commands (the hook accepted them; the room app cannot).
    let refused = |st: Map<String, Value>| {
        assert_eq!(st["status"], "FAILED", "{st:?}");
        st["info"].as_str().unwrap().to_string()
    };
    assert_eq!(
        refused(bob.send_data(json!("join")).await),
        "Malformed room command: the payload must be {command, options}"
    );
    assert_eq!(
        refused(bob.command("dance", json!({})).await),
        "Unknown room command \"dance\": join, leave or sendMessage"
    );
    assert!(refused(bob.command("join", json!({"name": 5})).await).contains("options.name must be a non-empty string"));
    assert!(refused(bob.command("join", json!({"name": "r", "record": true})).await)
        .starts_with("Room recording is not supported"));
    assert!(refused(bob.command("sendMessage", json!({"to": "alice", "text": "x"})).await)
        .contains("options.roomConfig must be an object"));
    // A raw frame the SDK would never send does not hurt the session either.
    bob.c.send_raw(r#"{"message":"sendData","data":[{"operationId":"raw","payload":{"command":"join","options":[1,{"name":null}]}}]}"#).await;
    let data = bob.frame("DataStatusEvent").await;
    assert_eq!(data[0]["status"], "FAILED", "{data:?}");

    // A Room API session without custom.login.
    let mut anon = Member::connect_as(&server, "roomApp", json!({"token": "t"})).await;
    assert!(refused(anon.command("join", json!({"name": "open"})).await).starts_with("Room commands need custom.login"));

    // Another app's sendData is plain data: a "join" there joins nothing.
    let mut plain = Member::connect_as(&server, "defaultApp", json!({"login": "dave"})).await;
    assert_eq!(plain.command("join", json!({"name": "open"})).await["status"], "ACCEPTED");

    // None of the above made anyone a member: Bob joins and finds Alice only.
    bob.accepted("join", json!({"name": "open"})).await;
    bob.expect_event("open", "STATE", json!(["alice"])).await;
    alice.expect_event("open", "JOINED", json!("bob")).await;
    assert!(alice.unread_events().is_empty() && bob.unread_events().is_empty() && plain.unread_events().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn the_command_run_is_the_one_the_backend_left_under_overwrite() {
    let backend = Backend::start().await;
    // OVERWRITE of payload on OnDataEvent: the backend sends everyone to room "lobby".
    backend.answer(|m, req| match m {
        "connect" => {
            let mut b = req.as_object().unwrap().clone();
            b.insert(
                "restClientConfig".into(),
                json!({"OnDataEvent": {"restPolicy": "OVERWRITE", "restOverwrite": "payload"}}),
            );
            // The connect answer may also set the login the room app uses.
            b.insert(
                "custom".into(),
                json!({"login": format!("{}-checked", req["custom"]["login"].as_str().unwrap())}),
            );
            Reply::json(200, Value::Object(b))
        }
        "OnDataEvent" => {
            let mut b = req.as_object().unwrap().clone();
            b["payload"]["options"]["name"] = json!("lobby");
            Reply::json(200, Value::Object(b))
        }
        _ => Reply::mirror(req),
    });
    let server = start_server(&app_toml(&backend.url("hooks"))).await;
    let mut alice = Member::connect(&server, "alice").await;
    let mut bob = Member::connect(&server, "bob").await;
    alice.accepted("join", json!({"name": "a"})).await;
    alice.expect_event("lobby", "STATE", json!([])).await;
    bob.accepted("join", json!({"name": "b"})).await;
    bob.expect_event("lobby", "STATE", json!(["alice-checked"])).await;
    alice.expect_event("lobby", "JOINED", json!("bob-checked")).await;
    server.shutdown().await;
}

#[tokio::test]
async fn no_room_app_when_app_keys_is_empty() {
    let backend = Backend::start().await;
    let server = start_server(&format!("{}[rooms]\napp_keys = []\n", app_toml(&backend.url("hooks")))).await;
    let mut alice = Member::connect(&server, "alice").await;
    let mut bob = Member::connect(&server, "bob").await;
    alice.accepted("join", json!({"name": "r"})).await;
    bob.accepted("join", json!({"name": "r"})).await;
    // Plain sendData: no STATE, no JOINED; a REST /data/send push is the next OnDataEvent.
    mark(&server, &mut alice, "r").await;
    server.shutdown().await;
}

/// Two applications with the room app share no room: the same room name is two rooms.
#[tokio::test]
async fn rooms_of_two_app_keys_are_apart() {
    let backend = Backend::start().await;
    let url = backend.url("hooks");
    let toml = format!(
        "{}[apps.otherRooms]\nurl = \"{url}\"\n[rooms]\napp_keys = [\"roomApp\", \"otherRooms\"]\n",
        app_toml(&url)
    );
    let server = start_server(&toml).await;
    let mut alice = Member::connect(&server, "alice").await;
    alice.accepted("join", json!({"name": "r"})).await;
    alice.expect_event("r", "STATE", json!([])).await;
    let mut mallory = Member::connect_as(&server, "otherRooms", json!({"login": "mallory", "token": "t"})).await;
    mallory.accepted("join", json!({"name": "r"})).await;
    mallory.expect_event("r", "STATE", json!([])).await;
    // Another tenant's member is nobody here: no JOINED reached alice, and messages do not cross.
    assert_eq!(
        mallory.refused("sendMessage", json!({"roomConfig": {"name": "r"}, "to": "alice", "text": "hi"})).await,
        "No participant alice in room r"
    );
    mark(&server, &mut alice, "r").await;
    server.shutdown().await;
}

/// `[rooms] max_members`: a join past it is refused with a clear reason, the members are not
/// told of it, and a member leaving makes room.
#[tokio::test]
async fn a_full_room_refuses_the_next_join() {
    let backend = Backend::start().await;
    let toml = format!("{}[rooms]\napp_keys = [\"roomApp\"]\nmax_members = 2\n", app_toml(&backend.url("hooks")));
    let server = start_server(&toml).await;
    let mut alice = Member::connect(&server, "alice").await;
    let mut bob = Member::connect(&server, "bob").await;
    let mut carol = Member::connect(&server, "carol").await;
    alice.accepted("join", json!({"name": "r"})).await;
    alice.expect_event("r", "STATE", json!([])).await;
    bob.accepted("join", json!({"name": "r"})).await;
    bob.expect_event("r", "STATE", json!(["alice"])).await;
    alice.expect_event("r", "JOINED", json!("bob")).await;
    assert_eq!(carol.refused("join", json!({"name": "r"})).await, "Room r is full: 2 members");
    bob.accepted("leave", json!({"name": "r"})).await;
    alice.expect_event("r", "LEFT", json!("bob")).await;
    carol.accepted("join", json!({"name": "r"})).await;
    carol.expect_event("r", "STATE", json!(["alice"])).await;
    // alice heard of bob leaving and carol joining, and of no refused join in between.
    alice.expect_event("r", "JOINED", json!("carol")).await;
    server.shutdown().await;
}
