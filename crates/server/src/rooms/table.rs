//! The rooms themselves, pure: inputs in (a join, a leave, a message, a member's stream that
//! starts or ends, a session that closes), the room events to push out (who gets which
//! `{roomName, name, info}`). No I/O, no clock, no lock: the rooms task (`super`) owns the one
//! [`Table`] and turns its [`Push`]es into `OnDataEvent` frames.
//!
//! A member is a session; what the other members see of it is its login (the connection's
//! `custom.login`), so a login is unique within a room. A room exists while it has members.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

/// A session may be in this many rooms at once (a client cannot grow the table without bound).
pub const MAX_ROOMS_PER_SESSION: usize = 32;
/// Longest room name, login or stream name kept, bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// Why a room command is refused: its `Display` is the `info` of the client's
/// `DataStatusEvent FAILED` (the SDK hands it to the room's `FAILED` callback on a join).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("Already joined room {room}")]
    AlreadyJoined { room: String },
    #[error("Not joined to room {room}")]
    NotJoined { room: String },
    #[error("Login {login} is already in room {room}")]
    LoginInUse { room: String, login: String },
    #[error("No participant {to} in room {room}")]
    NoSuchParticipant { room: String, to: String },
    #[error("Too many rooms: a session may be in {MAX_ROOMS_PER_SESSION} at once")]
    TooManyRooms,
    /// `[rooms] max_members`: every join and leave fans out to all members, so an unbounded
    /// room would let one join/leave loop cost O(members) frames per command.
    #[error("Room {room} is full: {max} members")]
    RoomFull { room: String, max: usize },
    /// The command reached the rooms after its session had closed (only the backend's
    /// `DataStatusEvent` hook sees this one).
    #[error("Session closed")]
    SessionClosed,
}

/// One room event for one member's session.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    pub to: Arc<str>,
    pub room: String,
    /// `STATE`, `JOINED`, `LEFT`, `PUBLISHED`, `UNPUBLISHED`, `FAILED`, `MESSAGE`.
    pub name: &'static str,
    pub info: Value,
}

impl Push {
    /// The `OnDataEvent` payload the Room API reads (`payload.roomName`, `.name`, `.info`).
    pub fn payload(&self) -> Value {
        json!({"roomName": self.room, "name": self.name, "info": self.info})
    }
}

#[derive(Debug)]
struct Member {
    session: Arc<str>,
    login: String,
    /// Names of its streams published into this room (`custom.name` = the room), in order.
    streams: Vec<String>,
}

/// `STATE`'s `info`: the members but `except`, each as its login, or `{login, name}` per
/// stream it published into the room.
fn state(members: &[Member], except: Option<&Arc<str>>) -> Value {
    let mut state = Vec::new();
    for m in members.iter().filter(|m| Some(&m.session) != except) {
        if m.streams.is_empty() {
            state.push(Value::from(m.login.as_str()));
        }
        for s in &m.streams {
            state.push(json!({"login": m.login, "name": s}));
        }
    }
    Value::Array(state)
}

/// The rooms of the node, by name; members in the order they joined.
#[derive(Debug)]
pub struct Table {
    /// Most members of one room (`[rooms] max_members`).
    max_members: usize,
    rooms: HashMap<String, Vec<Member>>,
    /// Session -> the rooms it is in (for a closing session and the per-session bound).
    of_session: HashMap<Arc<str>, Vec<String>>,
}

impl Table {
    /// An empty table whose rooms hold at most `max_members` members each (at least 1).
    pub fn new(max_members: usize) -> Table {
        Table { max_members: max_members.max(1), rooms: HashMap::new(), of_session: HashMap::new() }
    }

    /// Number of rooms.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// `session` (seen as `login`) joins `room`: `STATE` to it (the other members: a login, or
    /// `{login, name}` per stream they published into the room), `JOINED` to the others.
    pub fn join(&mut self, session: &Arc<str>, login: &str, room: &str) -> Result<Vec<Push>, RoomError> {
        let joined = self.of_session.get(session).map_or(0, Vec::len);
        let members = self.rooms.get(room).map(Vec::as_slice).unwrap_or_default();
        if let Some(me) = members.iter().find(|m| m.session == *session) {
            if me.login != login {
                return Err(RoomError::AlreadyJoined { room: room.into() });
            }
            // The same member joins again, e.g. a page that resumed its kept-alive session
            // (docs/hooks.md §8) and builds its room anew: STATE again, nobody else is told.
            return Ok(vec![push(session, room, "STATE", state(members, Some(session)))]);
        }
        if members.iter().any(|m| m.login == login) {
            return Err(RoomError::LoginInUse { room: room.into(), login: login.into() });
        }
        if joined >= MAX_ROOMS_PER_SESSION {
            return Err(RoomError::TooManyRooms);
        }
        if members.len() >= self.max_members {
            return Err(RoomError::RoomFull { room: room.into(), max: self.max_members });
        }
        let mut out = vec![push(session, room, "STATE", state(members, None))];
        out.extend(members.iter().map(|m| push(&m.session, room, "JOINED", login.into())));
        let members = self.rooms.entry(room.to_string()).or_default();
        members.push(Member { session: session.clone(), login: login.to_string(), streams: Vec::new() });
        self.of_session.entry(session.clone()).or_default().push(room.to_string());
        Ok(out)
    }

    /// `session` leaves `room`: `LEFT` to the others (its streams are not announced one by one:
    /// the SDK forgets a participant that left with its streams).
    pub fn leave(&mut self, session: &Arc<str>, room: &str) -> Result<Vec<Push>, RoomError> {
        let not_joined = || RoomError::NotJoined { room: room.into() };
        let members = self.rooms.get_mut(room).ok_or_else(not_joined)?;
        let i = members.iter().position(|m| m.session == *session).ok_or_else(not_joined)?;
        let gone = members.remove(i);
        let out = members.iter().map(|m| push(&m.session, room, "LEFT", gone.login.as_str().into())).collect();
        if members.is_empty() {
            self.rooms.remove(room);
        }
        if let Some(rooms) = self.of_session.get_mut(session) {
            rooms.retain(|r| r != room);
            if rooms.is_empty() {
                self.of_session.remove(session);
            }
        }
        Ok(out)
    }

    /// `MESSAGE {from, text}` from `session` to the member of `room` logged in as `to`.
    pub fn message(&self, session: &Arc<str>, room: &str, to: &str, text: &str) -> Result<Vec<Push>, RoomError> {
        let members = self.rooms.get(room).map(Vec::as_slice).unwrap_or_default();
        let from = members.iter().find(|m| m.session == *session).ok_or(RoomError::NotJoined { room: room.into() })?;
        let dest = members
            .iter()
            .find(|m| m.login == to)
            .ok_or_else(|| RoomError::NoSuchParticipant { room: room.into(), to: to.into() })?;
        Ok(vec![push(&dest.session, room, "MESSAGE", json!({"from": from.login, "text": text}))])
    }

    /// `session`'s stream `stream` became PUBLISHING with `custom.name` = `room`: `PUBLISHED
    /// {login, name}` to the others, if `session` is a member (else nothing).
    pub fn published(&mut self, session: &Arc<str>, room: &str, stream: &str) -> Vec<Push> {
        let Some(members) = self.rooms.get_mut(room) else { return Vec::new() };
        let Some(m) = members.iter_mut().find(|m| m.session == *session) else { return Vec::new() };
        if m.streams.iter().any(|s| s == stream) {
            return Vec::new();
        }
        m.streams.push(stream.to_string());
        let info = json!({"login": m.login, "name": stream});
        others(members, session, room, "PUBLISHED", &info)
    }

    /// `session`'s stream `stream` ended (`failed`: by a media failure): `UNPUBLISHED` (or
    /// `FAILED`) `{login, name}` to the others of each room it was published into.
    pub fn ended(&mut self, session: &Arc<str>, stream: &str, failed: bool) -> Vec<Push> {
        let name = if failed { "FAILED" } else { "UNPUBLISHED" };
        let mut out = Vec::new();
        for room in self.of_session.get(session).into_iter().flatten() {
            let Some(members) = self.rooms.get_mut(room) else { continue };
            let Some(m) = members.iter_mut().find(|m| m.session == *session) else { continue };
            let before = m.streams.len();
            m.streams.retain(|s| s != stream);
            if m.streams.len() != before {
                let info = json!({"login": m.login, "name": stream});
                out.extend(others(members, session, room, name, &info));
            }
        }
        out
    }

    /// The session is gone: it leaves every room it was in (`LEFT` to the others).
    pub fn session_closed(&mut self, session: &Arc<str>) -> Vec<Push> {
        let rooms = self.of_session.get(session).cloned().unwrap_or_default();
        rooms.iter().flat_map(|r| self.leave(session, r).unwrap_or_default()).collect()
    }
}

fn push(to: &Arc<str>, room: &str, name: &'static str, info: Value) -> Push {
    Push { to: to.clone(), room: room.to_string(), name, info }
}

fn others(members: &[Member], session: &Arc<str>, room: &str, name: &'static str, info: &Value) -> Vec<Push> {
    members.iter().filter(|m| m.session != *session).map(|m| push(&m.session, room, name, info.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(id: &str) -> Arc<str> {
        id.into()
    }

    fn shown(p: &[Push]) -> Vec<String> {
        p.iter().map(|p| format!("{}:{}:{}", p.to, p.name, p.info)).collect()
    }

    #[test]
    fn join_gives_state_to_the_joiner_and_joined_to_the_others() {
        let mut t = Table::new(100);
        assert_eq!(shown(&t.join(&s("a"), "alice", "r").unwrap()), ["a:STATE:[]"]);
        assert_eq!(shown(&t.published(&s("a"), "r", "r-alice-1a2b")), Vec::<String>::new());
        assert_eq!(
            shown(&t.join(&s("b"), "bob", "r").unwrap()),
            [r#"b:STATE:[{"login":"alice","name":"r-alice-1a2b"}]"#, r#"a:JOINED:"bob""#]
        );
        assert_eq!(
            shown(&t.join(&s("c"), "carol", "r").unwrap()),
            [
                r#"c:STATE:[{"login":"alice","name":"r-alice-1a2b"},"bob"]"#,
                r#"a:JOINED:"carol""#,
                r#"b:JOINED:"carol""#
            ]
        );
        assert_eq!(
            shown(&t.join(&s("c"), "carol", "r").unwrap()),
            [r#"c:STATE:[{"login":"alice","name":"r-alice-1a2b"},"bob"]"#],
            "a member joining again gets STATE again, and nobody hears of it"
        );
        assert_eq!(t.join(&s("c"), "carl", "r"), Err(RoomError::AlreadyJoined { room: "r".into() }));
        assert_eq!(t.join(&s("d"), "bob", "r").unwrap_err().to_string(), "Login bob is already in room r",);
    }

    #[test]
    fn streams_are_announced_to_the_others_of_their_room_only() {
        let mut t = Table::new(100);
        t.join(&s("a"), "alice", "r").unwrap();
        t.join(&s("b"), "bob", "r").unwrap();
        t.join(&s("c"), "carol", "other").unwrap();
        assert_eq!(shown(&t.published(&s("a"), "r", "x")), [r#"b:PUBLISHED:{"login":"alice","name":"x"}"#]);
        assert!(t.published(&s("a"), "r", "x").is_empty(), "once");
        assert!(t.published(&s("c"), "r", "y").is_empty(), "not a member of r");
        assert_eq!(shown(&t.ended(&s("a"), "x", false)), [r#"b:UNPUBLISHED:{"login":"alice","name":"x"}"#]);
        assert!(t.ended(&s("a"), "x", false).is_empty(), "once");
        t.published(&s("b"), "r", "z");
        assert_eq!(shown(&t.ended(&s("b"), "z", true)), [r#"a:FAILED:{"login":"bob","name":"z"}"#]);
    }

    #[test]
    fn messages_go_to_the_addressee_if_both_are_members() {
        let mut t = Table::new(100);
        t.join(&s("a"), "alice", "r").unwrap();
        t.join(&s("b"), "bob", "r").unwrap();
        assert_eq!(
            shown(&t.message(&s("a"), "r", "bob", "hi").unwrap()),
            [r#"b:MESSAGE:{"from":"alice","text":"hi"}"#]
        );
        assert_eq!(t.message(&s("a"), "r", "nobody", "hi").unwrap_err().to_string(), "No participant nobody in room r");
        assert_eq!(t.message(&s("c"), "r", "bob", "hi"), Err(RoomError::NotJoined { room: "r".into() }));
        assert_eq!(t.message(&s("a"), "none", "bob", "hi"), Err(RoomError::NotJoined { room: "none".into() }));
    }

    #[test]
    fn leave_and_close_tell_the_others_and_empty_rooms_go() {
        let mut t = Table::new(100);
        t.join(&s("a"), "alice", "r").unwrap();
        t.join(&s("a"), "alice", "q").unwrap();
        t.join(&s("b"), "bob", "r").unwrap();
        t.join(&s("b"), "bob", "q").unwrap();
        assert_eq!(shown(&t.leave(&s("b"), "r").unwrap()), [r#"a:LEFT:"bob""#]);
        assert_eq!(t.leave(&s("b"), "r"), Err(RoomError::NotJoined { room: "r".into() }));
        assert_eq!(shown(&t.session_closed(&s("a"))), [r#"b:LEFT:"alice""#]);
        assert_eq!(t.len(), 1, "r went with its last member");
        assert!(t.session_closed(&s("b")).is_empty());
        assert!(t.is_empty());
        assert!(t.of_session.is_empty());
    }

    #[test]
    fn a_session_joins_a_bounded_number_of_rooms() {
        let mut t = Table::new(100);
        for i in 0..MAX_ROOMS_PER_SESSION {
            t.join(&s("a"), "alice", &format!("r{i}")).unwrap();
        }
        assert_eq!(
            t.join(&s("a"), "alice", "one-more").unwrap_err().to_string(),
            "Too many rooms: a session may be in 32 at once"
        );
    }

    #[test]
    fn a_room_holds_a_bounded_number_of_members() {
        let mut t = Table::new(2);
        t.join(&s("a"), "alice", "r").unwrap();
        t.join(&s("b"), "bob", "r").unwrap();
        let full = t.join(&s("c"), "carol", "r").unwrap_err();
        assert_eq!(full.to_string(), "Room r is full: 2 members");
        // Nobody was told of the refused join, and the room is unchanged.
        assert_eq!(t.join(&s("a"), "alice", "r").unwrap()[0].info, serde_json::json!(["bob"]));
        // Another room is not concerned; a member leaving makes room.
        t.join(&s("c"), "carol", "other").unwrap();
        t.leave(&s("b"), "r").unwrap();
        assert_eq!(shown(&t.join(&s("c"), "carol", "r").unwrap()), ["c:STATE:[\"alice\"]", "a:JOINED:\"carol\""]);
    }
}
