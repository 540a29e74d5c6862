//! Streams across nodes (docs/cluster.md "Streams across nodes"): `playStream` of a name
//! published on another node pulls it from there, once per (stream, pulling node).
//!
//! ```text
//!  node B (pulling)                                  node A (origin)
//!  play "cam" not published here
//!   -> cluster directory: "cam" is A's
//!   -> relay publisher (str0m, own UDP port) offer ──NATS callgate.stream.pull.<A>──> play answer of
//!   <- accept answer <───────────────────────────────────────────────────────────────  a relay player
//!   ICE/DTLS-SRTP B -> A, RTP A -> B (PLI B -> A)     fed by A's publisher like any player
//!  local players attach to the relay like to a local publisher
//!  last local player leaves -> relay closed ──NATS release──> relay player closed
//!                           <──NATS callgate.stream.end.<B>── A's publisher ends: STOPPED on B
//!  A lost (cluster heartbeat) -> FAILED "Node lost" on B
//! ```
//!
//! State: `pulls` (pulling side, by name) and `served` (origin side, by relay player peer),
//! each behind a short lock never held across `.await`; lock order: the stream directory, then
//! `pulls`. NATS carries JSON; anything malformed is answered with an error, never a panic.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use callgate_hooks::Origin;
use callgate_media::{MediaEvent, PeerId};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::{fail_info, media_error_info, report_removed, Ending, Streams};
use crate::cluster::{Cluster, Kind as ClusterKind};
use callgate_proto::info as proto_info;

/// The cluster side of the node's streams.
pub struct Relays {
    cluster: Arc<Cluster>,
    /// Pulling side: stream name -> its relay publisher.
    pulls: Mutex<HashMap<String, Pull>>,
    /// One pull set up at a time: two players of a new name make one relay.
    setup: tokio::sync::Mutex<()>,
    /// Origin side: relay player peer -> what it serves.
    served: Mutex<HashMap<PeerId, Served>>,
}

struct Pull {
    origin: String,
    /// The relay publisher here.
    peer: PeerId,
    /// The relay player on the origin (its peer id there).
    relay_id: u64,
    /// The local players it feeds (`mediaSessionId`s).
    players: Vec<Arc<str>>,
}

struct Served {
    name: String,
    /// The pulling node.
    to: String,
}

/// A request on `callgate.stream.pull.<origin>`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum Request {
    #[serde(rename_all = "camelCase")]
    Pull { name: String, offer: String, from: String },
    #[serde(rename_all = "camelCase")]
    Release { relay_id: u64, from: String },
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    relay_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// A notice on `callgate.stream.end.<puller>`: the origin's publisher of `name` ended.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndNotice {
    name: String,
    relay_id: u64,
    from: String,
}

fn json<T: Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

impl Relays {
    pub fn new(cluster: Arc<Cluster>) -> Relays {
        Relays { cluster, pulls: Mutex::default(), setup: tokio::sync::Mutex::new(()), served: Mutex::default() }
    }

    /// A stream published here began or ended: other nodes should see it now
    /// ([`Cluster::announce_soon`]), not at the next heartbeat.
    pub(super) fn announce_soon(&self) {
        self.cluster.announce_soon();
    }

    /// (streams pulled here, relay players served to other nodes).
    pub fn counts(&self) -> (usize, usize) {
        (self.pulls.lock().len(), self.served.lock().len())
    }
}

/// Answers the other nodes' pull requests and end notices (lib.rs `start`, cluster mode).
pub async fn serve(streams: &Arc<Streams>) -> anyhow::Result<()> {
    let Some(r) = streams.relays.clone() else { return Ok(()) };
    let (w1, w2) = (Arc::downgrade(streams), Arc::downgrade(streams));
    r.cluster
        .serve_streams(
            move |body| {
                let w = w1.clone();
                async move {
                    match w.upgrade() {
                        Some(s) => json(&handle_request(&s, &body).await),
                        None => json(&Answer { error: Some("node stopping".into()), ..Default::default() }),
                    }
                }
            },
            move |body| {
                if let Some(s) = w2.upgrade() {
                    handle_notice(&s, &body);
                }
            },
        )
        .await
}

// ---- the pulling side ----

/// The relay publisher of `name` (published on another node), made if needed. `Err` is the
/// info for the player's `FAILED`.
pub(super) async fn source(streams: &Arc<Streams>, name: &str) -> Result<PeerId, &'static str> {
    let Some(r) = streams.relays.clone() else { return Err(proto_info::STREAM_NOT_FOUND) };
    let _one_at_a_time = r.setup.lock().await;
    if let Some(p) = r.pulls.lock().get(name) {
        return Ok(p.peer);
    }
    let mut filter = Map::new();
    filter.insert("name".into(), name.into());
    filter.insert("published".into(), Value::Bool(true));
    let owners = r.cluster.find(ClusterKind::Streams, &filter).await.map_err(|e| {
        tracing::warn!(name, error = format!("{e:#}"), "cluster: cannot look a stream up in the directory");
        proto_info::STREAM_NOT_FOUND
    })?;
    let Some(origin) = owners.iter().find_map(|o| o.get("nodeId").and_then(Value::as_str)).map(String::from) else {
        return Err(proto_info::STREAM_NOT_FOUND);
    };
    let peer = streams.media.next_peer_id();
    let (tx, rx) = mpsc::unbounded_channel();
    let offer = streams.media.relay(peer, tx).await.map_err(|e| media_error_info(&e))?;
    let me = r.cluster.node_id().to_string();
    let req = Request::Pull { name: name.to_string(), offer, from: me.clone() };
    let got = r.cluster.stream_request(&origin, json(&req)).await;
    let answer = match got.map(|b| serde_json::from_slice::<Answer>(&b)) {
        Ok(Ok(Answer { answer: Some(sdp), relay_id: Some(id), .. })) => (sdp, id),
        other => {
            tracing::info!(name, origin, answer = ?other, "cluster: the origin node did not give the stream");
            streams.media.close(peer);
            return Err(proto_info::STREAM_NOT_FOUND);
        }
    };
    if let Err(e) = streams.media.relay_answer(peer, answer.0).await {
        tracing::info!(name, origin, error = %e, "cluster: the origin node's answer was not accepted");
        streams.media.close(peer);
        release(&r, origin, answer.1);
        return Err(media_error_info(&e));
    }
    tracing::info!(name, origin, relay = answer.1, "cluster: pulling a stream from its origin node");
    r.pulls.lock().insert(name.to_string(), Pull { origin, peer, relay_id: answer.1, players: Vec::new() });
    tokio::spawn(watch_relay(Arc::downgrade(streams), name.to_string(), peer, rx));
    Ok(peer)
}

/// Whether another node publishes `name`, as this node's mirror of the directory shows it (no
/// NATS request; see [`Cluster::mirror_has_published`]).
pub(super) fn published_elsewhere(streams: &Streams, name: &str) -> bool {
    streams.relays.as_ref().is_some_and(|r| r.cluster.mirror_has_published(name))
}

/// Notes player `id` of the pulled `name` (fed by relay `peer`); false when that pull ended
/// meanwhile. Called under the directory's lock, in the same step that adds the player.
pub(super) fn joined(streams: &Streams, name: &str, peer: PeerId, id: &Arc<str>) -> bool {
    let Some(r) = streams.relays.as_ref() else { return false };
    match r.pulls.lock().get_mut(name) {
        Some(p) if p.peer == peer => {
            p.players.push(id.clone());
            true
        }
        _ => false,
    }
}

/// A relayed player `id` of `name` left (or never joined): the last one ends the pull.
pub(super) fn player_left(streams: &Streams, name: &str, id: &str) {
    let Some(r) = streams.relays.as_ref() else { return };
    let idle = {
        let mut pulls = r.pulls.lock();
        match pulls.get_mut(name) {
            Some(p) => {
                p.players.retain(|x| &**x != id);
                if p.players.is_empty() {
                    pulls.remove(name)
                } else {
                    None
                }
            }
            None => None,
        }
    };
    if let Some(p) = idle {
        tracing::info!(name, origin = p.origin, "cluster: the last local player left; the pull stops");
        streams.media.close(p.peer);
        release(r, p.origin, p.relay_id);
    }
}

/// Tells the origin to close its relay player (in a task; a gone origin needs no telling).
fn release(r: &Arc<Relays>, origin: String, relay_id: u64) {
    let r = r.clone();
    tokio::spawn(async move {
        let req = Request::Release { relay_id, from: r.cluster.node_id().to_string() };
        if let Err(e) = r.cluster.stream_request(&origin, json(&req)).await {
            tracing::debug!(origin, error = ?e, "cluster: release of a relay not acknowledged");
        }
    });
}

/// Ends the pull of `name` if `which` matches it, and its players with `ending`.
fn end_pull(streams: &Streams, name: &str, which: impl Fn(&Pull) -> bool, ending: Ending<'_>) -> Option<Pull> {
    let r = streams.relays.as_ref()?;
    let p = {
        let mut pulls = r.pulls.lock();
        match pulls.get(name) {
            Some(p) if which(p) => pulls.remove(name),
            _ => None,
        }
    }?;
    streams.media.close(p.peer);
    for id in &p.players {
        let removed = streams.dir.lock().remove(id);
        if let Some(rm) = removed {
            report_removed(streams, rm, &ending, Origin::Client);
        }
    }
    Some(p)
}

/// The relay's media events: a relay that fails ends its players (and the origin is told).
async fn watch_relay(streams: Weak<Streams>, name: String, peer: PeerId, mut rx: mpsc::UnboundedReceiver<MediaEvent>) {
    while let Some(ev) = rx.recv().await {
        let Some(s) = streams.upgrade() else { return };
        match ev {
            MediaEvent::Connected => tracing::info!(name, "cluster: relay of a pulled stream connected"),
            MediaEvent::Failed(why) => {
                tracing::info!(name, reason = %why, "cluster: relay of a pulled stream failed");
                if let Some(p) = end_pull(&s, &name, |p| p.peer == peer, Ending::MediaFailed(fail_info(&why))) {
                    if let Some(r) = s.relays.as_ref() {
                        release(r, p.origin, p.relay_id);
                    }
                }
                return;
            }
        }
    }
}

/// An end notice from an origin: its publisher of the name is gone; the players here get
/// `STOPPED` as a local publisher's players do.
fn handle_notice(streams: &Streams, body: &[u8]) {
    let Ok(n) = serde_json::from_slice::<EndNotice>(body) else {
        tracing::warn!("cluster: a malformed stream end notice was ignored");
        return;
    };
    let ending = Ending::Terminated(proto_info::STOPPED_BY_PUBLISHER_STOP);
    if end_pull(streams, &n.name, |p| p.relay_id == n.relay_id && p.origin == n.from, ending).is_some() {
        tracing::info!(name = n.name, origin = n.from, "cluster: a pulled stream ended at its origin");
    }
}

/// `node` is lost (every survivor hears it, docs/cluster.md "Lost nodes"): what is pulled from
/// it ends, its players `FAILED` "Node lost".
pub fn origin_lost(streams: &Streams, node: &str) {
    let Some(r) = streams.relays.as_ref() else { return };
    let names: Vec<String> = r.pulls.lock().iter().filter(|(_, p)| p.origin == node).map(|(n, _)| n.clone()).collect();
    for name in names {
        if end_pull(streams, &name, |p| p.origin == node, Ending::MediaFailed(proto_info::NODE_LOST)).is_some() {
            tracing::warn!(name, origin = node, "cluster: the origin of a pulled stream is lost");
        }
    }
}

// ---- the origin side ----

async fn handle_request(streams: &Arc<Streams>, body: &[u8]) -> Answer {
    let err = |e: &str| Answer { error: Some(e.to_string()), ..Default::default() };
    let Some(r) = streams.relays.clone() else { return err("not a cluster node") };
    let req = match serde_json::from_slice::<Request>(body) {
        Ok(req) => req,
        Err(e) => return err(&format!("malformed request: {e}")),
    };
    match req {
        Request::Release { relay_id, from } => {
            let gone = {
                let mut served = r.served.lock();
                match served.get(&PeerId(relay_id)) {
                    Some(s) if s.to == from => served.remove(&PeerId(relay_id)),
                    _ => None,
                }
            };
            match gone {
                Some(s) => {
                    tracing::info!(name = s.name, to = s.to, "cluster: a node stopped pulling a stream");
                    streams.media.close(PeerId(relay_id));
                    Answer::default()
                }
                None => err("no such relay"),
            }
        }
        Request::Pull { name, offer, from } => {
            let source = streams.dir.lock().publisher(&name).map(|e| e.peer);
            let Some(source) = source else { return err(proto_info::STREAM_NOT_FOUND) };
            let peer = streams.media.next_peer_id();
            let (tx, rx) = mpsc::unbounded_channel();
            let sdp = match streams.media.play(peer, source, offer, tx).await {
                Ok(sdp) => sdp,
                Err(e) => return err(&e.to_string()),
            };
            {
                // Added only while the publisher lives: one that ended meanwhile has told its
                // relays already, and would not tell this one.
                let dir = streams.dir.lock();
                if dir.publisher(&name).map(|e| e.peer) != Some(source) {
                    drop(dir);
                    streams.media.close(peer);
                    return err(proto_info::STREAM_NOT_FOUND);
                }
                r.served.lock().insert(peer, Served { name: name.clone(), to: from.clone() });
            }
            tracing::info!(name, to = from, "cluster: another node pulls a stream");
            tokio::spawn(watch_served(Arc::downgrade(streams), peer, rx));
            Answer { answer: Some(sdp), relay_id: Some(peer.0), error: None }
        }
    }
}

/// A relay player whose peer fails (the pulling node went away) is forgotten.
async fn watch_served(streams: Weak<Streams>, peer: PeerId, mut rx: mpsc::UnboundedReceiver<MediaEvent>) {
    while let Some(ev) = rx.recv().await {
        if let MediaEvent::Failed(why) = ev {
            if let Some(s) = streams.upgrade() {
                if let Some(gone) = s.relays.as_ref().and_then(|r| r.served.lock().remove(&peer)) {
                    tracing::info!(name = gone.name, to = gone.to, reason = %why, "cluster: a relay player failed");
                }
            }
            return;
        }
    }
}

/// The publisher of `name` here ended: its relay players close and their nodes are told.
pub(super) fn publisher_ended(streams: &Streams, name: &str) {
    let Some(r) = streams.relays.as_ref() else { return };
    let ended: Vec<(PeerId, Served)> = {
        let mut served = r.served.lock();
        let ids: Vec<PeerId> = served.iter().filter(|(_, s)| s.name == name).map(|(p, _)| *p).collect();
        ids.into_iter().filter_map(|p| served.remove(&p).map(|s| (p, s))).collect()
    };
    for (peer, s) in ended {
        streams.media.close(peer);
        let notice = EndNotice { name: s.name, relay_id: peer.0, from: r.cluster.node_id().to_string() };
        let r = r.clone();
        tokio::spawn(async move { r.cluster.stream_notice(&s.to, json(&notice)).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_notices_have_their_wire_shape_and_junk_is_an_error() {
        let req = Request::Pull { name: "cam".into(), offer: "v=0".into(), from: "n1".into() };
        let v: Value = serde_json::from_slice(&json(&req)).unwrap();
        assert_eq!(v, serde_json::json!({"op": "pull", "name": "cam", "offer": "v=0", "from": "n1"}));
        let rel: Request = serde_json::from_str(r#"{"op":"release","relayId":7,"from":"n2"}"#).unwrap();
        assert!(matches!(rel, Request::Release { relay_id: 7, ref from } if from == "n2"));
        for junk in [&b""[..], b"{}", b"{\"op\":\"pull\"}", b"[1]", b"\xff"] {
            assert!(serde_json::from_slice::<Request>(junk).is_err());
            assert!(serde_json::from_slice::<EndNotice>(junk).is_err());
        }
        let a: Answer = serde_json::from_str(r#"{"error":"Stream not found"}"#).unwrap();
        assert_eq!((a.answer, a.relay_id, a.error.as_deref()), (None, None, Some("Stream not found")));
    }
}
