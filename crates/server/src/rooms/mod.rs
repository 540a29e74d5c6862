//! The room app: the server side of the SDK's Room API (`room-module.js`,
//! spec/client-protocol.md §8.3; docs/rooms.md) for sessions whose appKey is one of
//! `[rooms] app_keys` (`roomApp`).
//!
//! | `sendData` payload | effect | pushed (`OnDataEvent {payload:{roomName, name, info}}`) |
//! |---|---|---|
//! | `{command:"join", options:{name, record?}}` | the session joins | `STATE` to it, `JOINED` to the others |
//! | `{command:"leave", options:{name}}` | it leaves | `LEFT` to the others |
//! | `{command:"sendMessage", options:{roomConfig:{name}, to, text}}` | — | `MESSAGE {from, text}` to `to` |
//! | (a member's stream with `custom.name` = the room becomes PUBLISHING / ends) | | `PUBLISHED` / `UNPUBLISHED` or `FAILED` `{login, name}` to the others |
//! | (the session closes) | it leaves every room | `LEFT` to the others |
//!
//! A command runs after the `OnDataEvent` hook accepted the `sendData` (the backend may refuse
//! it, or rewrite the payload under OVERWRITE); its outcome is the `DataStatusEvent` (`FAILED`
//! with the [`RoomError`] or the malformed command's reason as `info`).
//!
//! Ownership: one task owns the [`table::Table`]; the `sendData` handlers, the streams (from
//! under their directory lock, so a stream's start and end reach it in the directory's order)
//! and the closing sessions send it [`Input`]s. Its inbox is unbounded so that the streams and
//! the session cleanup never wait; every input is one client frame or one stream's change, each
//! already bounded by the sessions' own limits, and the task handles each without awaiting.
//! Rooms live on this node only (no cluster).

pub mod table;

use std::sync::Arc;

use callgate_hooks::FieldList;
use callgate_proto::messages;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::party::Party;
use crate::registry::Registry;
pub use table::RoomError;
use table::{Push, Table, MAX_NAME_BYTES};

/// A room command, parsed from a `sendData` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Join { room: String },
    Leave { room: String },
    Message { room: String, to: String, text: String },
}

/// What the rooms task is told.
enum Input {
    Command { party: Arc<Party>, login: String, command: Command, reply: oneshot::Sender<Result<(), RoomError>> },
    Published { session: Arc<str>, room: String, stream: String },
    Ended { session: Arc<str>, stream: String, failed: bool },
    Closed { session: Arc<str> },
}

/// The handle of the rooms task.
pub struct Rooms {
    tx: mpsc::UnboundedSender<Input>,
    app_keys: Vec<String>,
}

impl Rooms {
    /// Starts the rooms task for sessions of `app_keys`; pushes go to the sessions of
    /// `sessions` (a closed session is no longer there, so nothing reaches it). The task ends
    /// when the handle and its clones are dropped.
    pub fn start(app_keys: Vec<String>, max_members: usize, sessions: Arc<Registry<Party>>) -> Arc<Rooms> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, max_members, sessions));
        Arc::new(Rooms { tx, app_keys })
    }

    /// Whether sessions of `app_key` use the room app.
    pub fn serves(&self, app_key: &str) -> bool {
        self.app_keys.iter().any(|k| k == app_key)
    }

    /// Runs the room command in `payload` (a `sendData` payload the backend accepted) for
    /// `party`; `Err` is the client's `info`.
    pub async fn command(&self, party: &Arc<Party>, payload: Option<&Value>) -> Result<(), String> {
        let command = parse(payload)?;
        let login = login(&party.data_ref())?;
        let (reply, answer) = oneshot::channel();
        let input = Input::Command { party: party.clone(), login, command, reply };
        self.tx.send(input).map_err(|_| callgate_proto::info::FAILED_BY_ERROR.to_string())?;
        match answer.await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(callgate_proto::info::FAILED_BY_ERROR.to_string()),
        }
    }

    /// A published stream (its object `obj`) of `session` became PUBLISHING.
    pub fn stream_published(&self, session: &Arc<str>, obj: &Map<String, Value>) {
        if let (Some(room), Some(stream)) = (room_of(obj), obj.get("name").and_then(Value::as_str)) {
            let input = Input::Published { session: session.clone(), room: room.into(), stream: stream.into() };
            let _ = self.tx.send(input);
        }
    }

    /// A published stream of `session` ended (`failed`: media failure).
    pub fn stream_ended(&self, session: &Arc<str>, obj: &Map<String, Value>, failed: bool) {
        if let (Some(_), Some(stream)) = (room_of(obj), obj.get("name").and_then(Value::as_str)) {
            let _ = self.tx.send(Input::Ended { session: session.clone(), stream: stream.into(), failed });
        }
    }

    /// The session is gone (called after it left the registry and its streams ended).
    pub fn session_closed(&self, session: &Arc<str>) {
        let _ = self.tx.send(Input::Closed { session: session.clone() });
    }
}

/// `custom.name` of a stream object: the room it is published into.
fn room_of(obj: &Map<String, Value>) -> Option<&str> {
    obj.get("custom")?.get("name")?.as_str().filter(|s| !s.is_empty())
}

async fn run(mut rx: mpsc::UnboundedReceiver<Input>, max_members: usize, sessions: Arc<Registry<Party>>) {
    // One table per app key: two applications (tenants) listed in `[rooms] app_keys` never
    // share a room. A session is a member only in its own app's table, so what is told by
    // session (a stream, a close) goes to every table and concerns at most one.
    let mut tables: std::collections::HashMap<Arc<str>, Table> = std::collections::HashMap::new();
    while let Some(input) = rx.recv().await {
        let pushes = match input {
            Input::Command { party, login, command, reply } => {
                // A session that closed before its command got here would stay a member for
                // ever: its `Closed` has been handled already (it left the registry first).
                if !sessions.holds(&party.id, &party) {
                    let _ = reply.send(Err(RoomError::SessionClosed));
                    continue;
                }
                let id = &party.id;
                let table = tables.entry(Arc::from(&*party.app.key)).or_insert_with(|| Table::new(max_members));
                let outcome = match &command {
                    Command::Join { room } => table.join(id, &login, room),
                    Command::Leave { room } => table.leave(id, room),
                    Command::Message { room, to, text } => table.message(id, room, to, text),
                };
                let (pushes, result) = match outcome {
                    Ok(p) => (p, Ok(())),
                    Err(e) => (Vec::new(), Err(e)),
                };
                let (what, room) = (command_name(&command), command_room(&command));
                tracing::info!(
                    session = &**id,
                    login,
                    command = what,
                    room,
                    ?result,
                    rooms = table.len(),
                    "room command"
                );
                // The pushes leave before the answer, so a joiner has its STATE first.
                deliver(&sessions, &pushes);
                let _ = reply.send(result);
                continue;
            }
            Input::Published { session, room, stream } => {
                tables.values_mut().flat_map(|t| t.published(&session, &room, &stream)).collect::<Vec<_>>()
            }
            Input::Ended { session, stream, failed } => {
                tables.values_mut().flat_map(|t| t.ended(&session, &stream, failed)).collect::<Vec<_>>()
            }
            Input::Closed { session } => {
                tables.values_mut().flat_map(|t| t.session_closed(&session)).collect::<Vec<_>>()
            }
        };
        deliver(&sessions, &pushes);
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Join { .. } => "join",
        Command::Leave { .. } => "leave",
        Command::Message { .. } => "sendMessage",
    }
}

fn command_room(c: &Command) -> &str {
    match c {
        Command::Join { room } | Command::Leave { room } | Command::Message { room, .. } => room,
    }
}

/// Each push as `OnDataEvent {nodeId, sessionId, operationId, payload}` (the shape of
/// `/rest-api/data/send`) to its session, if it is still connected.
fn deliver(sessions: &Registry<Party>, pushes: &[Push]) {
    for p in pushes {
        let Some(party) = sessions.get(&p.to) else { continue };
        let mut ev = Map::new();
        ev.insert("nodeId".into(), Value::from(&*party.node.id));
        ev.insert("operationId".into(), uuid::Uuid::new_v4().to_string().into());
        ev.insert("sessionId".into(), Value::from(&*party.id));
        ev.insert("payload".into(), p.payload());
        party.send_object(messages::ON_DATA_EVENT, &ev, &FieldList::default());
    }
}

/// The member's login: the connection's `custom.login` (as the connect hook left it).
fn login(data: &Map<String, Value>) -> Result<String, String> {
    match data.get("custom").and_then(|c| c.get("login")).and_then(Value::as_str) {
        Some(l) if !l.is_empty() && l.len() <= MAX_NAME_BYTES => Ok(l.to_string()),
        _ => Err(format!(
            "Room commands need custom.login in the connection: a non-empty string of at most {MAX_NAME_BYTES} bytes"
        )),
    }
}

/// A `sendData` payload as a room command; `Err` says what is wrong with it.
pub fn parse(payload: Option<&Value>) -> Result<Command, String> {
    const SHAPE: &str = "Malformed room command: the payload must be {command, options}";
    let p = payload.and_then(Value::as_object).ok_or(SHAPE)?;
    let command = p.get("command").and_then(Value::as_str).ok_or(SHAPE)?;
    let options = p.get("options").and_then(Value::as_object).ok_or(SHAPE)?;
    let text_field = |obj: &Map<String, Value>, key: &str, path: &str| -> Result<String, String> {
        match obj.get(key).and_then(Value::as_str) {
            Some(s) if !s.is_empty() && s.len() <= MAX_NAME_BYTES => Ok(s.to_string()),
            _ => Err(format!(
                "Malformed room command {command}: {path} must be a non-empty string of at most {MAX_NAME_BYTES} bytes"
            )),
        }
    };
    match command {
        "join" => {
            match options.get("record") {
                None | Some(Value::Null) | Some(Value::Bool(false)) => {}
                Some(Value::Bool(true)) => {
                    return Err("Room recording is not supported: publish the room's streams with record: true".into())
                }
                Some(_) => return Err("Malformed room command join: options.record must be a boolean".into()),
            }
            Ok(Command::Join { room: text_field(options, "name", "options.name")? })
        }
        "leave" => Ok(Command::Leave { room: text_field(options, "name", "options.name")? }),
        "sendMessage" => {
            let config = options.get("roomConfig").and_then(Value::as_object).ok_or_else(|| {
                "Malformed room command sendMessage: options.roomConfig must be an object".to_string()
            })?;
            let room = text_field(config, "name", "options.roomConfig.name")?;
            let to = text_field(options, "to", "options.to")?;
            let text = match options.get("text") {
                Some(Value::String(s)) => s.clone(),
                _ => return Err("Malformed room command sendMessage: options.text must be a string".into()),
            };
            Ok(Command::Message { room, to, text })
        }
        other => Err(format!("Unknown room command {other:?}: join, leave or sendMessage")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commands_parse_as_the_sdk_sends_them() {
        let p = |v: Value| parse(Some(&v));
        assert_eq!(
            p(json!({"command":"join","options":{"name":"r","record":false}})),
            Ok(Command::Join { room: "r".into() })
        );
        assert_eq!(p(json!({"command":"join","options":{"name":"r"}})), Ok(Command::Join { room: "r".into() }));
        assert_eq!(p(json!({"command":"leave","options":{"name":"r"}})), Ok(Command::Leave { room: "r".into() }));
        assert_eq!(
            p(json!({"command":"sendMessage","options":{"roomConfig":{"name":"r"},"to":"bob","text":"hi"}})),
            Ok(Command::Message { room: "r".into(), to: "bob".into(), text: "hi".into() })
        );
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        let p = |v: Value| parse(Some(&v)).unwrap_err();
        assert_eq!(parse(None).unwrap_err(), "Malformed room command: the payload must be {command, options}");
        assert_eq!(p(json!(3)), "Malformed room command: the payload must be {command, options}");
        assert_eq!(p(json!({"command":"join"})), "Malformed room command: the payload must be {command, options}");
        assert_eq!(
            p(json!({"command":"dance","options":{}})),
            "Unknown room command \"dance\": join, leave or sendMessage"
        );
        assert!(p(json!({"command":"join","options":{"name":""}})).contains("options.name must be a non-empty string"));
        assert!(p(json!({"command":"join","options":{"name":"x".repeat(300)}})).contains("at most 256 bytes"));
        assert!(p(json!({"command":"join","options":{"name":"r","record":true}}))
            .starts_with("Room recording is not supported"));
        assert_eq!(
            p(json!({"command":"join","options":{"name":"r","record":"yes"}})),
            "Malformed room command join: options.record must be a boolean"
        );
        assert!(p(json!({"command":"sendMessage","options":{"to":"b","text":"t"}}))
            .contains("options.roomConfig must be an object"));
        assert!(p(json!({"command":"sendMessage","options":{"roomConfig":{"name":"r"},"text":"t"}}))
            .contains("options.to must be"));
        assert!(p(json!({"command":"sendMessage","options":{"roomConfig":{"name":"r"},"to":"b","text":5}}))
            .contains("options.text must be a string"));
    }

    #[test]
    fn the_login_is_custom_login() {
        let d = |v: Value| login(v.as_object().unwrap());
        assert_eq!(d(json!({"custom":{"login":"alice","token":"t"}})), Ok("alice".into()));
        for bad in [json!({}), json!({"custom":{}}), json!({"custom":{"login":""}}), json!({"custom":{"login":7}})] {
            assert!(d(bad).unwrap_err().starts_with("Room commands need custom.login"));
        }
    }
}
