//! The node's stream directory: which streams exist, who owns them, which publisher feeds which
//! player. Pure data (no I/O, no locks, no clock); the caller holds it behind one short lock and
//! acts on what the methods return, after releasing it.
//!
//! Invariants:
//! - a `mediaSessionId` names at most one stream;
//! - a name has at most one publisher;
//! - every player's `source` is a live publisher, and is listed in that publisher's `players`
//!   (removing a publisher removes its players and hands them back as orphans).

use std::collections::HashMap;
use std::sync::Arc;

use callgate_media::PeerId;
use serde_json::{Map, Value};

/// Publish or play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Publish,
    Play,
}

/// The non-terminal statuses a stream can be in (terminal ones remove it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    /// Publisher connected (ICE + DTLS up).
    Publishing,
    /// Player connected.
    Playing,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => callgate_proto::status::stream::PENDING,
            Status::Publishing => callgate_proto::status::stream::PUBLISHING,
            Status::Playing => callgate_proto::status::stream::PLAYING,
        }
    }
}

/// One stream. `S` is its owner (the session; a plain value in tests).
#[derive(Debug, Clone)]
pub struct Entry<S> {
    /// The client's `mediaSessionId`.
    pub id: Arc<str>,
    pub name: String,
    pub kind: Kind,
    pub status: Status,
    pub owner: S,
    /// The owner's session id (for REST filters and ownership checks).
    pub session_id: Arc<str>,
    pub peer: PeerId,
    /// Play: the publisher's id.
    pub source: Option<Arc<str>>,
    /// Publish: the players it feeds.
    pub players: Vec<Arc<str>>,
    /// The stream object: what the client sent (minus the SDP) and the hook left, plus the
    /// context fields, `status` and `info`. This is what events and the REST API show.
    pub obj: Map<String, Value>,
}

/// Why a stream cannot be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NameInUse,
    IdInUse,
    StreamNotFound,
}

/// What a removal took out: the stream, and (publisher) the players it fed.
#[derive(Debug)]
pub struct Removed<S> {
    pub entry: Entry<S>,
    pub orphans: Vec<Entry<S>>,
}

#[derive(Debug)]
pub struct Directory<S> {
    streams: HashMap<Arc<str>, Entry<S>>,
    publishers: HashMap<String, Arc<str>>,
}

impl<S> Default for Directory<S> {
    fn default() -> Self {
        Directory { streams: HashMap::new(), publishers: HashMap::new() }
    }
}

impl<S: Clone> Directory<S> {
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Entry<S>> {
        self.streams.get(id)
    }

    /// The publisher of `name`, if any.
    pub fn publisher(&self, name: &str) -> Option<&Entry<S>> {
        self.publishers.get(name).and_then(|id| self.streams.get(id))
    }

    /// Adds a publisher (status PENDING).
    pub fn add_publisher(&mut self, mut e: Entry<S>) -> Result<(), Refusal> {
        if self.streams.contains_key(&e.id) {
            return Err(Refusal::IdInUse);
        }
        if self.publishers.contains_key(&e.name) {
            return Err(Refusal::NameInUse);
        }
        e.kind = Kind::Publish;
        e.source = None;
        e.players.clear();
        self.publishers.insert(e.name.clone(), e.id.clone());
        self.streams.insert(e.id.clone(), e);
        Ok(())
    }

    /// Adds a player of the publisher of `e.name` (status PENDING). Returns the publisher's
    /// media peer, which feeds the player.
    pub fn add_player(&mut self, mut e: Entry<S>) -> Result<PeerId, Refusal> {
        if self.streams.contains_key(&e.id) {
            return Err(Refusal::IdInUse);
        }
        let Some(src_id) = self.publishers.get(&e.name).cloned() else { return Err(Refusal::StreamNotFound) };
        let src = self.streams.get_mut(&src_id).expect("publishers index only live streams");
        src.players.push(e.id.clone());
        let peer = src.peer;
        e.kind = Kind::Play;
        e.source = Some(src_id);
        e.players.clear();
        self.streams.insert(e.id.clone(), e);
        Ok(peer)
    }

    /// Adds a player fed by something that is not in the directory: a pulled camera (its media
    /// peer is the player's `source` in the media core, and `rtsp` keeps its players) or a
    /// relay of a stream published on another node (`relay`).
    pub fn add_detached_player(&mut self, mut e: Entry<S>) -> Result<(), Refusal> {
        if self.streams.contains_key(&e.id) {
            return Err(Refusal::IdInUse);
        }
        e.kind = Kind::Play;
        e.source = None;
        e.players.clear();
        self.streams.insert(e.id.clone(), e);
        Ok(())
    }

    /// Sets a live stream's status (and `status`/`info` in its object); returns the entry.
    pub fn set_status(&mut self, id: &str, status: Status) -> Option<&Entry<S>> {
        let e = self.streams.get_mut(id)?;
        e.status = status;
        e.obj.insert("status".into(), status.as_str().into());
        e.obj.insert("info".into(), "".into());
        Some(e)
    }

    /// The stream object of `id`, to update fields that are not the status.
    pub fn obj_mut(&mut self, id: &str) -> Option<&mut Map<String, Value>> {
        self.streams.get_mut(id).map(|e| &mut e.obj)
    }

    /// Removes a stream; a publisher takes its players with it.
    pub fn remove(&mut self, id: &str) -> Option<Removed<S>> {
        let entry = self.streams.remove(id)?;
        let mut orphans = Vec::new();
        match entry.kind {
            Kind::Publish => {
                if self.publishers.get(&entry.name).is_some_and(|p| **p == *entry.id) {
                    self.publishers.remove(&entry.name);
                }
                for p in &entry.players {
                    if let Some(o) = self.streams.remove(p) {
                        orphans.push(o);
                    }
                }
            }
            Kind::Play => {
                if let Some(src) = entry.source.as_ref().and_then(|s| self.streams.get_mut(s)) {
                    src.players.retain(|p| *p != entry.id);
                }
            }
        }
        Some(Removed { entry, orphans })
    }

    /// Removes every stream of the session `session_id` (its players first, so a player fed by
    /// the session's own publisher is reported once, as the session's).
    pub fn remove_session(&mut self, session_id: &str) -> Vec<Removed<S>> {
        let mut ids: Vec<(Kind, Arc<str>)> =
            self.streams.values().filter(|e| &*e.session_id == session_id).map(|e| (e.kind, e.id.clone())).collect();
        ids.sort_by_key(|(k, _)| *k == Kind::Publish);
        ids.into_iter().filter_map(|(_, id)| self.remove(&id)).collect()
    }

    /// Every stream whose object has all fields of `filter` with equal values.
    pub fn find(&self, filter: &Map<String, Value>) -> Vec<&Entry<S>> {
        let mut v: Vec<&Entry<S>> =
            self.streams.values().filter(|e| filter.iter().all(|(k, want)| e.obj.get(k) == Some(want))).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// The players of the publisher `id`.
    pub fn players_of(&self, id: &str) -> Vec<&Entry<S>> {
        self.streams.get(id).map(|e| e.players.iter().filter_map(|p| self.streams.get(p)).collect()).unwrap_or_default()
    }

    /// Every live stream (a snapshot of references).
    pub fn all(&self) -> impl Iterator<Item = &Entry<S>> {
        self.streams.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(id: &str, name: &str, session: &str, peer: u64) -> Entry<&'static str> {
        let obj = json!({"mediaSessionId": id, "name": name, "sessionId": session, "status": "PENDING"});
        Entry {
            id: id.into(),
            name: name.into(),
            kind: Kind::Publish,
            status: Status::Pending,
            owner: "owner",
            session_id: session.into(),
            peer: PeerId(peer),
            source: None,
            players: vec![],
            obj: obj.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn one_publisher_per_name_and_one_stream_per_id() {
        let mut d = Directory::default();
        d.add_publisher(entry("p1", "cam", "s1", 1)).unwrap();
        assert_eq!(d.add_publisher(entry("p2", "cam", "s2", 2)).unwrap_err(), Refusal::NameInUse);
        assert_eq!(d.add_publisher(entry("p1", "other", "s1", 3)).unwrap_err(), Refusal::IdInUse);
        assert_eq!(d.add_player(entry("p1", "cam", "s1", 3)).unwrap_err(), Refusal::IdInUse);
        d.add_publisher(entry("p3", "other", "s1", 4)).unwrap();
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn players_need_a_publisher_and_are_fed_by_its_peer() {
        let mut d = Directory::default();
        assert_eq!(d.add_player(entry("x1", "cam", "s2", 5)).unwrap_err(), Refusal::StreamNotFound);
        d.add_publisher(entry("p1", "cam", "s1", 1)).unwrap();
        assert_eq!(d.add_player(entry("x1", "cam", "s2", 5)).unwrap(), PeerId(1));
        assert_eq!(d.add_player(entry("x2", "cam", "s3", 6)).unwrap(), PeerId(1));
        let players: Vec<&str> = d.players_of("p1").iter().map(|e| &*e.id).collect();
        assert_eq!(players.len(), 2);
        assert_eq!(d.get("x1").unwrap().source.as_deref(), Some("p1"));
        assert_eq!(d.get("x1").unwrap().kind, Kind::Play);
    }

    #[test]
    fn removing_a_publisher_orphans_its_players_and_frees_the_name() {
        let mut d = Directory::default();
        d.add_publisher(entry("p1", "cam", "s1", 1)).unwrap();
        d.add_player(entry("x1", "cam", "s2", 5)).unwrap();
        d.add_player(entry("x2", "cam", "s3", 6)).unwrap();
        let r = d.remove("p1").unwrap();
        let mut orphans: Vec<&str> = r.orphans.iter().map(|e| &*e.id).collect();
        orphans.sort();
        assert_eq!(orphans, ["x1", "x2"]);
        assert!(d.is_empty());
        d.add_publisher(entry("p9", "cam", "s9", 9)).unwrap();
    }

    #[test]
    fn removing_a_player_unlinks_it_from_its_publisher() {
        let mut d = Directory::default();
        d.add_publisher(entry("p1", "cam", "s1", 1)).unwrap();
        d.add_player(entry("x1", "cam", "s2", 5)).unwrap();
        let r = d.remove("x1").unwrap();
        assert!(r.orphans.is_empty());
        assert!(d.players_of("p1").is_empty());
        assert!(d.remove("x1").is_none());
    }

    #[test]
    fn a_session_leaving_takes_its_streams_and_orphans_other_sessions_players() {
        let mut d = Directory::default();
        d.add_publisher(entry("p1", "cam", "s1", 1)).unwrap();
        d.add_player(entry("own", "cam", "s1", 2)).unwrap(); // the publisher's session plays its own stream
        d.add_player(entry("x1", "cam", "s2", 3)).unwrap();
        d.add_publisher(entry("p2", "mic", "s2", 4)).unwrap();
        let removed = d.remove_session("s1");
        assert_eq!(removed.len(), 2, "the session's player, then its publisher");
        assert_eq!(&*removed[0].entry.id, "own");
        assert_eq!(&*removed[1].entry.id, "p1");
        let orphans: Vec<&str> = removed[1].orphans.iter().map(|e| &*e.id).collect();
        assert_eq!(orphans, ["x1"], "the other session's player is orphaned, the own one was removed before");
        assert_eq!(d.len(), 1);
        assert!(d.get("p2").is_some());
    }

    #[test]
    fn status_changes_show_in_the_object_and_find_filters_on_it() {
        let mut d = Directory::default();
        d.add_publisher(entry("p1", "cam", "s1", 1)).unwrap();
        d.add_publisher(entry("p2", "mic", "s1", 2)).unwrap();
        d.set_status("p1", Status::Publishing).unwrap();
        assert_eq!(d.get("p1").unwrap().obj["status"], "PUBLISHING");
        let f = json!({"status": "PUBLISHING"});
        let found: Vec<&str> = d.find(f.as_object().unwrap()).iter().map(|e| &*e.id).collect();
        assert_eq!(found, ["p1"]);
        assert_eq!(d.find(&Map::new()).len(), 2);
        let none = json!({"name": "cam", "status": "PENDING"});
        assert!(d.find(none.as_object().unwrap()).is_empty());
        assert!(d.set_status("nope", Status::Playing).is_none());
    }
}
