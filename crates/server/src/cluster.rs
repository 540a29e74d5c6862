//! The cluster directory (`[cluster]`, docs/cluster.md): which nodes are alive and which node
//! owns each session, call and stream, kept in NATS JetStream key-value buckets.
//!
//! - `callgate_nodes`: one entry per node (key: its node id), value `{nodeId, restUrl, wsUrl,
//!   startedAt, heartbeatAt, leaseMs, sessions, calls, streams}`.
//! - `callgate_sessions`, `callgate_calls`, `callgate_streams`: one entry per object (key: its
//!   id), value the object as `/rest-api/*/find` shows it, secrets left out, with `nodeId` = its
//!   owner.
//!
//! `callgate_nodes` has `max_age = lease_ms`: a node entry that is not written again within the
//! lease is dropped by the NATS server, and each node rewrites its own every `heartbeat_ms`
//! ([`Cluster::start_heartbeat`]). The object buckets have `max_age = OBJECT_TTL_LEASES x
//! lease_ms`: each beat writes the objects that began or changed since the last one (a hash of
//! each entry as last written tells), deletes those that ended, and renews an unchanged one only
//! once half of that age has passed, so a node's steady cost is its node entry, not one write
//! per object per beat (docs/benchmarks.md "Cluster cost"). After a failed beat (NATS restarted
//! without its memory-stored buckets) the next one writes every object again. A node that shuts
//! down deletes its entries ([`Cluster::leave`]); a killed one's are deleted by the survivor that
//! reports it (below), or expire.
//!
//! REST routing: each node answers `callgate.rest.<key of its node id>` ([`Cluster::serve_rest`]);
//! a node that gets a REST request for an object another node owns asks the owner there
//! ([`Cluster::owner`], [`Cluster::forward`]), NATS request-reply with `request_timeout_ms`. The
//! request travels as its path (header `Callgate-Path`) and body; the answer as its status
//! (`Callgate-Status`), `Content-Type`, `Retry-After` and body.
//!
//! Lost nodes: each node watches the three object buckets into a [`Mirror`] of what the
//! other nodes hold (an entry that expires sends no event, so the mirror keeps a dead node's
//! last objects). A node absent from `callgate_nodes` at a heartbeat whose objects are still in
//! the mirror, and stays absent for 2 heartbeats (none within a lease of this node's own failed beat), is lost; the first survivor to create its key in `callgate_lost` (a create fails
//! when the key exists: one winner) gets its objects as a [`Lost`] and sends their end events;
//! the others forget them.
//!
//! This module knows NATS and the shape of the entries, not the node: the heartbeat reads the
//! node's objects through the [`Snapshot`] closure `start` (lib.rs) gives it, and the REST API
//! merges [`Cluster::find`]'s remote objects with its local ones. Keys are the ids in
//! unpadded base64url (KV keys allow only `[-/_=.a-zA-Z0-9]`; ids hold `@`, `:` …).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use async_nats::jetstream::{self, kv};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::config::ClusterSection;

/// The bucket of the live nodes.
pub const NODES_BUCKET: &str = "callgate_nodes";

/// The bucket of lost nodes' claims: key = the lost node, value = the survivor that reports it.
pub const LOST_BUCKET: &str = "callgate_lost";

/// A lost node's claim outlives its objects' entries by far: no late survivor reports it again.
const LOST_CLAIM_LEASES: u32 = 20;

/// The object buckets' `max_age`, in leases: an unchanged object is written again once half of
/// it has passed.
const OBJECT_TTL_LEASES: u32 = 10;

/// What a node that died held, as the directory last showed it (each object with its
/// `nodeId`): the survivor that claimed it sends the end events.
#[derive(Debug, Default)]
pub struct Lost {
    pub node_id: String,
    pub sessions: Vec<Map<String, Value>>,
    pub calls: Vec<Map<String, Value>>,
    pub streams: Vec<Map<String, Value>>,
}

/// One node's objects in the mirror: (kind index, key) -> object.
type Objects = std::collections::HashMap<(usize, String), Map<String, Value>>;

/// Other nodes' objects, from watching the object buckets: owner -> its objects.
#[derive(Default)]
struct Mirror {
    by_owner: std::collections::HashMap<String, Objects>,
    owner_of: std::collections::HashMap<(usize, String), String>,
}

impl Mirror {
    fn put(&mut self, kind: usize, key: String, obj: Map<String, Value>) {
        let owner = str_field(&obj, "nodeId").to_string();
        self.remove(kind, &key);
        self.owner_of.insert((kind, key.clone()), owner.clone());
        self.by_owner.entry(owner).or_default().insert((kind, key), obj);
    }

    fn remove(&mut self, kind: usize, key: &str) {
        if let Some(owner) = self.owner_of.remove(&(kind, key.to_string())) {
            if let Some(objs) = self.by_owner.get_mut(&owner) {
                objs.remove(&(kind, key.to_string()));
                if objs.is_empty() {
                    self.by_owner.remove(&owner);
                }
            }
        }
    }

    /// Takes every object of `owner` out of the mirror, with the keys (kind index, key) they
    /// had in the directory.
    fn take(&mut self, owner: &str) -> (Lost, Vec<(usize, String)>) {
        let mut lost = Lost { node_id: owner.to_string(), ..Lost::default() };
        let mut keys = Vec::new();
        for ((kind, key), obj) in self.by_owner.remove(owner).unwrap_or_default() {
            self.owner_of.remove(&(kind, key.clone()));
            keys.push((kind, key));
            match Kind::ALL[kind] {
                Kind::Sessions => lost.sessions.push(obj),
                Kind::Calls => lost.calls.push(obj),
                Kind::Streams => lost.streams.push(obj),
            }
        }
        (lost, keys)
    }
}

/// Directory requests at once while a beat writes or a find reads.
const CONCURRENCY: usize = 32;

/// Headers of a forwarded REST request and of its answer (NATS message headers).
const PATH_HEADER: &str = "Callgate-Path";
const STATUS_HEADER: &str = "Callgate-Status";
const CONTENT_TYPE_HEADER: &str = "Content-Type";
const RETRY_AFTER_HEADER: &str = "Retry-After";

/// The stream subjects of a node: pull requests, end notices.
const PULL: &str = "pull";
const END: &str = "end";

/// `callgate.stream.<what>.<key of node_id>`: where `node_id` hears of pulled streams.
fn stream_subject(what: &str, node_id: &str) -> String {
    format!("callgate.stream.{what}.{}", key_of(node_id))
}

/// The subject on which `node_id` answers forwarded REST requests.
fn rest_subject(node_id: &str) -> String {
    // Unpadded base64url has no `.`, `*`, `>` or white space: one subject token.
    format!("callgate.rest.{}", key_of(node_id))
}

/// The answer to a REST request, as the owner node gave it.
#[derive(Debug, Clone)]
pub struct RestAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    pub retry_after: Option<String>,
    pub body: Bytes,
}

/// Why a forwarded request got no answer from its owner.
#[derive(Debug)]
pub enum ForwardError {
    /// Nobody listens on the owner's subject: the node is gone (its entries not yet expired).
    Gone,
    /// The owner did not answer within `request_timeout_ms`.
    TimedOut,
    /// NATS itself failed (connection lost, …).
    Nats(String),
}

/// The kinds of objects in the directory, one bucket each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sessions,
    Calls,
    Streams,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Sessions, Kind::Calls, Kind::Streams];

    pub fn bucket(self) -> &'static str {
        match self {
            Kind::Sessions => "callgate_sessions",
            Kind::Calls => "callgate_calls",
            Kind::Streams => "callgate_streams",
        }
    }

    /// The field of an object that is its id (and, encoded, its key).
    pub fn id_field(self) -> &'static str {
        match self {
            Kind::Sessions => "sessionId",
            Kind::Calls => "callId",
            Kind::Streams => "mediaSessionId",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The node's objects at one moment, as the REST API shows them; read by each heartbeat.
#[derive(Default)]
pub struct Snapshot {
    pub sessions: Vec<Arc<Map<String, Value>>>,
    pub calls: Vec<Map<String, Value>>,
    pub streams: Vec<Map<String, Value>>,
}

impl Snapshot {
    fn objects(&self, kind: Kind) -> Vec<&Map<String, Value>> {
        match kind {
            Kind::Sessions => self.sessions.iter().map(|m| &**m).collect(),
            Kind::Calls => self.calls.iter().collect(),
            Kind::Streams => self.streams.iter().collect(),
        }
    }
}

/// What the node entry says besides its load; known once the ports are bound.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    /// `http://host:port` of the node's REST API.
    pub rest_url: String,
    /// `ws://host:port` of the node's client WebSocket.
    pub ws_url: String,
    /// When the node started, ms since the Unix epoch.
    pub started_at: u64,
}

/// The KV key of an id.
pub fn key_of(id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// An object as announced: its fields without the secrets ([`crate::secrets::is_secret`]) and
/// with `nodeId` = the owner (whatever `nodeId` the object had).
struct Announced<'a> {
    obj: &'a Map<String, Value>,
    owner: &'a str,
}

impl serde::Serialize for Announced<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (k, v) in self.obj {
            if k != "nodeId" && !crate::secrets::is_view_secret(k) {
                m.serialize_entry(k, v)?;
            }
        }
        m.serialize_entry("nodeId", self.owner)?;
        m.end()
    }
}

/// The four buckets.
struct Stores {
    nodes: kv::Store,
    kinds: [kv::Store; 3],
    lost: kv::Store,
}

/// What the heartbeat keeps between beats (behind one async lock: a beat and [`Cluster::leave`]
/// never interleave).
#[derive(Default)]
struct Beats {
    /// The keys this node wrote, per kind, and what it wrote there and when: those missing
    /// from the next snapshot are deleted, those unchanged are left alone for a while.
    announced: [std::collections::HashMap<String, Written>; 3],
    /// The node left the directory: no beat writes any more.
    left: bool,
    /// The last beat failed (logged once until one succeeds again).
    failing: bool,
    /// Owners of mirrored objects with no node entry, since when (module docs, "Lost nodes").
    missing: std::collections::HashMap<String, std::time::Instant>,
    /// No node is declared lost before this: a lease after this node's last failed beat (a
    /// NATS restart that lost the buckets: every node writes its entry again as it reconnects,
    /// some later than others).
    quiet_until: Option<std::time::Instant>,
}

/// An object entry as this node last wrote it.
#[derive(Clone, Copy)]
struct Written {
    /// A hash of the value written; 0: unknown (it must be written again).
    hash: u64,
    at: std::time::Instant,
}

/// A hash of an entry's value, never 0.
fn value_hash(v: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish() | 1
}

/// How long an early beat ([`Cluster::announce_soon`]) waits for more of the same moment.
pub const ANNOUNCE_COALESCE: Duration = Duration::from_millis(20);

/// A node's membership of the cluster: its NATS connection and the directory's buckets.
pub struct Cluster {
    node_id: Arc<str>,
    cfg: ClusterSection,
    client: async_nats::Client,
    js: jetstream::Context,
    /// `None` after a failed beat, so the next one looks the buckets up (or creates them)
    /// again: a NATS server restarted without its storage has lost them.
    stores: parking_lot::Mutex<Option<Arc<Stores>>>,
    beats: tokio::sync::Mutex<Beats>,
    /// Live nodes seen by the last beat (`callgate_cluster_nodes`).
    live_nodes: AtomicUsize,
    /// Other nodes' objects (module docs, "Lost nodes").
    mirror: Arc<parking_lot::Mutex<Mirror>>,
    /// The tasks watching the object buckets into the mirror.
    watchers: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    heartbeat: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Wakes the heartbeat before its period ([`Cluster::announce_soon`]).
    soon: tokio::sync::Notify,
    /// The task answering forwarded REST requests ([`Cluster::serve_rest`]).
    rest_server: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The tasks answering this node's stream subjects ([`Cluster::serve_streams`]).
    stream_servers: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Cluster {
    /// Connects to `cfg.nats_url` within `request_timeout_ms` and finds or creates the buckets.
    /// An error says why (the start then fails before any port is bound). Once connected, the
    /// client reconnects on its own, with backoff, whenever the connection is lost.
    pub async fn join(cfg: &ClusterSection, node_id: Arc<str>) -> anyhow::Result<Arc<Cluster>> {
        let timeout = Duration::from_millis(cfg.request_timeout_ms);
        let urls: Vec<async_nats::ServerAddr> =
            cfg.nats_url.split(',').map(|u| u.trim().parse()).collect::<Result<_, _>>().context("cluster.nats_url")?;
        let connect = async_nats::ConnectOptions::new()
            .name(format!("callgate {node_id}"))
            .connection_timeout(timeout)
            .request_timeout(Some(timeout))
            .event_callback(|ev| async move {
                match ev {
                    async_nats::Event::Disconnected => tracing::warn!("cluster: NATS connection lost; reconnecting"),
                    async_nats::Event::Connected => tracing::info!("cluster: NATS connection (re)established"),
                    other => tracing::debug!(event = %other, "cluster: NATS event"),
                }
            })
            .connect(urls.as_slice());
        let client = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within cluster.request_timeout_ms = {}", cfg.request_timeout_ms))
            .and_then(|r| r.map_err(anyhow::Error::from))
            .with_context(|| format!("cannot connect to NATS at cluster.nats_url = {:?}", cfg.nats_url))?;
        let js = jetstream::new(client.clone());
        let cluster = Cluster {
            node_id,
            cfg: cfg.clone(),
            client,
            js,
            stores: parking_lot::Mutex::new(None),
            beats: tokio::sync::Mutex::new(Beats::default()),
            live_nodes: AtomicUsize::new(0),
            mirror: Arc::default(),
            watchers: parking_lot::Mutex::new(Vec::new()),
            heartbeat: parking_lot::Mutex::new(None),
            soon: tokio::sync::Notify::new(),
            rest_server: parking_lot::Mutex::new(None),
            stream_servers: parking_lot::Mutex::new(Vec::new()),
        };
        cluster
            .stores()
            .await
            .context("cannot set up the cluster directory (is JetStream enabled: nats-server -js?)")?;
        tracing::info!(nats_url = %cfg.nats_url, lease_ms = cfg.lease_ms, heartbeat_ms = cfg.heartbeat_ms, "cluster: joined");
        Ok(Arc::new(cluster))
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Live nodes as of the last heartbeat (this one included once it has beaten).
    pub fn live_nodes(&self) -> usize {
        self.live_nodes.load(Ordering::Relaxed)
    }

    /// The object buckets' `max_age`.
    fn object_ttl(&self) -> Duration {
        Duration::from_millis(self.cfg.lease_ms) * OBJECT_TTL_LEASES
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.request_timeout_ms)
    }

    /// The buckets, looked up or created on first use and after a failure.
    async fn stores(&self) -> anyhow::Result<Arc<Stores>> {
        if let Some(s) = self.stores.lock().clone() {
            return Ok(s);
        }
        let lease = Duration::from_millis(self.cfg.lease_ms);
        let nodes = bucket(&self.js, NODES_BUCKET, lease).await?;
        let mut kinds = Vec::with_capacity(3);
        for k in Kind::ALL {
            kinds.push(bucket(&self.js, k.bucket(), self.object_ttl()).await?);
        }
        let kinds: [kv::Store; 3] = kinds.try_into().map_err(|_| anyhow::anyhow!("three buckets"))?;
        let lost = bucket(&self.js, LOST_BUCKET, lease * LOST_CLAIM_LEASES).await?;
        let s = Arc::new(Stores { nodes, kinds, lost });
        *self.stores.lock() = Some(s.clone());
        Ok(s)
    }

    /// Starts the heartbeat: every `heartbeat_ms`, [`Cluster::beat`] with what `snapshot`
    /// reads of the node. The first beat is at once. [`Cluster::leave`] stops it.
    pub fn start_heartbeat(
        self: &Arc<Self>,
        facts: NodeFacts,
        snapshot: impl Fn() -> Snapshot + Send + Sync + 'static,
        on_gone: impl Fn(&str) + Send + Sync + 'static,
        on_lost: impl Fn(Lost) + Send + Sync + 'static,
    ) {
        self.start_watchers();
        let me = self.clone();
        let every = Duration::from_millis(self.cfg.heartbeat_ms);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = me.soon.notified() => {
                        // What else begins in the same moment (a room's streams, a batch of
                        // publishers) goes out in the same beat.
                        tokio::time::sleep(ANNOUNCE_COALESCE.min(every)).await;
                    }
                }
                let snap = snapshot();
                // A beat never outlives its period by much: a NATS server that does not
                // answer makes this beat fail, not the next ones wait.
                let r = tokio::time::timeout(every.max(me.request_timeout()), me.beat(&facts, &snap))
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the heartbeat timed out")));
                let lost = match r {
                    Ok(ref lost) => lost.clone(),
                    Err(_) => Vec::new(),
                };
                me.after_beat(r.map(|_| ())).await;
                for node in lost {
                    // Every survivor: what it pulls from the node ends (docs/cluster.md
                    // "Streams across nodes"); only the claim's winner reports the node's objects.
                    on_gone(&node);
                    if let Some(l) = me.claim(&node).await {
                        on_lost(l);
                    }
                }
            }
        });
        *self.heartbeat.lock() = Some(task);
    }

    /// Something other nodes look for began or ended here (a published stream): beat within
    /// [`ANNOUNCE_COALESCE`] instead of at the next period, so a `playStream` on another node
    /// finds the stream about a NATS round trip after it is PUBLISHING, not up to a heartbeat
    /// later. Calls in the same moment share one beat; a beat writes only what changed.
    pub fn announce_soon(&self) {
        self.soon.notify_one();
    }

    async fn after_beat(&self, r: anyhow::Result<()>) {
        let mut b = self.beats.lock().await;
        match r {
            Ok(()) if b.failing => {
                b.failing = false;
                tracing::info!("cluster: heartbeat works again; this node's directory entries are renewed");
            }
            Ok(()) => {}
            Err(e) => {
                *self.stores.lock() = None;
                b.quiet_until = Some(std::time::Instant::now() + Duration::from_millis(self.cfg.lease_ms));
                // What was written may be gone (a NATS server restarted without its buckets):
                // the next beat writes every object again.
                for kind in b.announced.iter_mut() {
                    for w in kind.values_mut() {
                        w.hash = 0;
                    }
                }
                metrics::counter!("callgate_cluster_heartbeat_failures_total").increment(1);
                if !b.failing {
                    b.failing = true;
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "cluster: heartbeat failed; this node's entries expire after cluster.lease_ms unless a later beat renews them"
                    );
                }
            }
        }
    }

    /// Watches each object bucket into the mirror: the current entries first, then every
    /// change; a watch that ends or fails (NATS restarted) is made again after a heartbeat.
    fn start_watchers(self: &Arc<Self>) {
        let every = Duration::from_millis(self.cfg.heartbeat_ms);
        let mut tasks = self.watchers.lock();
        for kind in Kind::ALL {
            let me = Arc::downgrade(self);
            tasks.push(tokio::spawn(async move {
                loop {
                    let Some(c) = me.upgrade() else { return };
                    let watch = match c.stores().await {
                        Ok(st) => st.kinds[kind.index()].watch_with_history(">").await.map_err(anyhow::Error::from),
                        Err(e) => Err(e),
                    };
                    let mirror = c.mirror.clone();
                    let me_id = c.node_id.clone();
                    drop(c);
                    if let Ok(mut watch) = watch {
                        while let Some(Ok(entry)) = watch.next().await {
                            let mut m = mirror.lock();
                            match entry.operation {
                                kv::Operation::Put => match serde_json::from_slice::<Value>(&entry.value) {
                                    Ok(Value::Object(obj)) if str_field(&obj, "nodeId") != &*me_id => {
                                        m.put(kind.index(), entry.key, obj)
                                    }
                                    _ => m.remove(kind.index(), &entry.key),
                                },
                                kv::Operation::Delete | kv::Operation::Purge => m.remove(kind.index(), &entry.key),
                            }
                        }
                    }
                    tokio::time::sleep(every).await;
                }
            }));
        }
    }

    /// Claims the lost node `node` in `callgate_lost`: its objects if this node is the first to
    /// (they leave the mirror either way, unless the claim could not be tried: next beat).
    async fn claim(&self, node: &str) -> Option<Lost> {
        let stores = self.stores().await.ok()?;
        let r = tokio::time::timeout(
            self.request_timeout(),
            stores.lost.create(key_of(node), Bytes::from(self.node_id.to_string())),
        )
        .await;
        match r {
            Ok(Ok(_)) => {
                let (lost, keys) = self.mirror.lock().take(node);
                // Its entries go now (they would expire with the object buckets' age).
                let deletes = futures_util::stream::iter(keys)
                    .map(|(kind, key)| {
                        let store = stores.kinds[kind].clone();
                        async move { store.delete(key).await }
                    })
                    .buffer_unordered(CONCURRENCY)
                    .collect::<Vec<_>>();
                if tokio::time::timeout(self.request_timeout(), deletes).await.is_err() {
                    tracing::info!(node, "cluster: deleting a lost node's entries timed out; they expire");
                }
                tracing::warn!(
                    node,
                    sessions = lost.sessions.len(),
                    calls = lost.calls.len(),
                    streams = lost.streams.len(),
                    "cluster: a node is lost (its lease expired); this node reports its objects' end"
                );
                metrics::counter!("callgate_cluster_nodes_lost_total").increment(1);
                Some(lost)
            }
            Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                tracing::info!(node, "cluster: a lost node is reported by another node");
                let _ = self.mirror.lock().take(node);
                None
            }
            Ok(Err(e)) => {
                tracing::warn!(node, error = %e, "cluster: cannot claim a lost node; trying again next heartbeat");
                None
            }
            Err(_) => None,
        }
    }

    /// One heartbeat: writes the node entry, writes each object of `snap` that is new, changed
    /// or due for renewal, deletes what this node announced before and is no longer in `snap`,
    /// and counts the live nodes. Returns the lost nodes: owners of mirrored objects with no
    /// node entry.
    pub async fn beat(&self, facts: &NodeFacts, snap: &Snapshot) -> anyhow::Result<Vec<String>> {
        let mut b = self.beats.lock().await;
        if b.left {
            return Ok(Vec::new());
        }
        let stores = self.stores().await?;
        let node = serde_json::json!({
            "nodeId": &*self.node_id,
            "restUrl": facts.rest_url,
            "wsUrl": facts.ws_url,
            "startedAt": facts.started_at,
            "heartbeatAt": now_ms(),
            "leaseMs": self.cfg.lease_ms,
            "sessions": snap.sessions.len(),
            "calls": snap.calls.len(),
            "streams": snap.streams.len(),
        });
        stores.nodes.put(key_of(&self.node_id), Bytes::from(node.to_string())).await.context("node entry")?;
        let at = std::time::Instant::now();
        let renew_after = self.object_ttl() / 2;
        for kind in Kind::ALL {
            let store = &stores.kinds[kind.index()];
            let mut now = HashSet::new();
            let mut puts = Vec::new();
            for obj in snap.objects(kind) {
                let Some(id) = obj.get(kind.id_field()).and_then(Value::as_str) else { continue };
                let value = serde_json::to_vec(&Announced { obj, owner: &self.node_id })?;
                let key = key_of(id);
                now.insert(key.clone());
                let hash = value_hash(&value);
                let written = b.announced[kind.index()].get(&key);
                if written.is_some_and(|w| w.hash == hash && at.duration_since(w.at) < renew_after) {
                    continue;
                }
                puts.push((key, Bytes::from(value), hash));
            }
            // `announced` holds every key that may be in the bucket, written before the puts go
            // out (a heartbeat stopped mid-way by `leave` still has them deleted) and kept until
            // a delete succeeds (a failed one is tried again next beat). A failed beat marks
            // them all unknown (`after_beat`).
            let announced = &mut b.announced[kind.index()];
            let gone: Vec<String> = announced.keys().filter(|k| !now.contains(*k)).cloned().collect();
            for (k, _, hash) in &puts {
                announced.insert(k.clone(), Written { hash: *hash, at });
            }
            let puts: Vec<(String, Bytes)> = puts.into_iter().map(|(k, v, _)| (k, v)).collect();
            futures_util::stream::iter(puts)
                .map(|(k, v)| {
                    let store = store.clone();
                    async move { store.put(k, v).await }
                })
                .buffer_unordered(CONCURRENCY)
                .try_collect::<Vec<_>>()
                .await
                .with_context(|| format!("writing to {}", kind.bucket()))?;
            futures_util::stream::iter(gone.clone())
                .map(|k| {
                    let store = store.clone();
                    async move { store.delete(k).await }
                })
                .buffer_unordered(CONCURRENCY)
                .try_collect::<Vec<_>>()
                .await
                .with_context(|| format!("deleting from {}", kind.bucket()))?;
            for k in &gone {
                b.announced[kind.index()].remove(k);
            }
        }
        // The owners are read before the nodes: an owner's node entry was written before its
        // objects, so an owner seen here whose entry is missing below has let it expire.
        let owners: Vec<String> = self.mirror.lock().by_owner.keys().cloned().collect();
        let live = values(&stores.nodes).await?;
        self.live_nodes.store(live.len(), Ordering::Relaxed);
        let live: HashSet<&str> = live.iter().map(|n| str_field(n, "nodeId")).collect();
        // Lost once missing for two heartbeats: a live node writes its entry every heartbeat.
        // After a NATS restart that lost the buckets, nodes write their entries again as they
        // reconnect, some a while after others: no node is declared lost within a lease of this
        // node's own failed beat (`quiet_until`). A dead one is reported within about
        // lease + 3 heartbeats after its last beat.
        let patience = Duration::from_millis(2 * self.cfg.heartbeat_ms);
        let now = std::time::Instant::now();
        let quiet = b.quiet_until.is_some_and(|t| now < t);
        // A node once seen missing stays a candidate after its objects leave the mirror: another
        // survivor that reported it first deleted them, and this node must still end what it
        // pulls from it (`on_gone`) when its own patience runs out. Such an orphan is lost only
        // if a survivor claimed it (below); else it left gracefully (it deleted its objects and
        // its node entry) and is forgotten.
        let owners: HashSet<String> = owners.into_iter().collect();
        let candidates: std::collections::BTreeSet<String> =
            owners.iter().cloned().chain(b.missing.keys().cloned()).collect();
        let missing: Vec<String> =
            candidates.into_iter().filter(|o| !live.contains(o.as_str()) && o.as_str() != &*self.node_id).collect();
        b.missing.retain(|o, _| missing.contains(o));
        let mut lost = Vec::new();
        for o in missing {
            let since = *b.missing.entry(o.clone()).or_insert(now);
            if !quiet && now.duration_since(since) >= patience {
                b.missing.remove(&o);
                if owners.contains(&o) || matches!(stores.lost.get(key_of(&o)).await, Ok(Some(_))) {
                    lost.push(o);
                }
            }
        }
        Ok(lost)
    }

    /// Whether the mirror shows a stream named `name` published on another node: a lookup with
    /// no NATS request, for paths anyone may call (an HLS request for a name published nowhere
    /// must not cost a scan of the directory). The mirror trails the directory by a watch
    /// event.
    pub fn mirror_has_published(&self, name: &str) -> bool {
        let streams = Kind::Streams.index();
        self.mirror.lock().by_owner.values().flat_map(|objs| objs.iter()).any(|((kind, _), obj)| {
            *kind == streams
                && obj.get("name").and_then(Value::as_str) == Some(name)
                && obj.get("published") == Some(&Value::Bool(true))
        })
    }

    /// The live nodes' entries (this one's too), ordered by node id.
    pub async fn nodes(&self) -> anyhow::Result<Vec<Map<String, Value>>> {
        let stores = self.stores().await?;
        let mut v = tokio::time::timeout(self.request_timeout(), values(&stores.nodes))
            .await
            .map_err(|_| anyhow::anyhow!("no answer within cluster.request_timeout_ms"))??;
        v.sort_by(|a, b| str_field(a, "nodeId").cmp(str_field(b, "nodeId")));
        Ok(v)
    }

    /// The objects of `kind` that OTHER nodes own and whose fields include every field of
    /// `filter` with an equal value, ordered by id. This node's own are the caller's (fresher).
    pub async fn find(&self, kind: Kind, filter: &Map<String, Value>) -> anyhow::Result<Vec<Map<String, Value>>> {
        let stores = self.stores().await?;
        let mut v = tokio::time::timeout(self.request_timeout(), values(&stores.kinds[kind.index()]))
            .await
            .map_err(|_| anyhow::anyhow!("no answer within cluster.request_timeout_ms"))??;
        v.retain(|o| str_field(o, "nodeId") != &*self.node_id && filter.iter().all(|(k, want)| o.get(k) == Some(want)));
        v.sort_by(|a, b| str_field(a, kind.id_field()).cmp(str_field(b, kind.id_field())));
        Ok(v)
    }

    /// The node that owns the object `id` of `kind`, as the directory says (`None`: not in
    /// it, e.g. ended, or begun less than a heartbeat ago).
    pub async fn owner(&self, kind: Kind, id: &str) -> anyhow::Result<Option<String>> {
        let stores = self.stores().await?;
        let got = tokio::time::timeout(self.request_timeout(), stores.kinds[kind.index()].get(key_of(id)))
            .await
            .map_err(|_| anyhow::anyhow!("no answer within cluster.request_timeout_ms"))??;
        Ok(got
            .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
            .and_then(|m| m.get("nodeId").and_then(Value::as_str).map(String::from)))
    }

    /// The ids of the live nodes other than this one (from the directory).
    pub async fn other_nodes(&self) -> anyhow::Result<Vec<String>> {
        let mut ids: Vec<String> = self.nodes().await?.iter().map(|n| str_field(n, "nodeId").to_string()).collect();
        ids.retain(|id| !id.is_empty() && id != &*self.node_id);
        Ok(ids)
    }

    /// Sends a REST request (`path` and JSON `body`) to `node` and waits for its answer, at
    /// most `request_timeout_ms` plus `extra` (what the request itself may take on the owner).
    pub async fn forward(
        &self,
        node: &str,
        path: &str,
        body: Bytes,
        extra: Duration,
    ) -> Result<RestAnswer, ForwardError> {
        use async_nats::RequestErrorKind as K;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(PATH_HEADER, path);
        let request =
            async_nats::Request::new().headers(headers).payload(body).timeout(Some(self.request_timeout() + extra));
        let reply = self.client.send_request(rest_subject(node), request).await.map_err(|e| match e.kind() {
            K::NoResponders => ForwardError::Gone,
            K::TimedOut => ForwardError::TimedOut,
            K::Other => ForwardError::Nats(e.to_string()),
        })?;
        let header = |name: &str| reply.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
        let status = header(STATUS_HEADER)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| ForwardError::Nats(format!("the answer of node {node} has no {STATUS_HEADER}")))?;
        Ok(RestAnswer {
            status,
            content_type: header(CONTENT_TYPE_HEADER),
            retry_after: header(RETRY_AFTER_HEADER),
            body: reply.payload,
        })
    }

    /// Answers REST requests that other nodes forward to this one: each runs `handle(path,
    /// body)` in a task of its own and its answer goes back to the asking node. Subscribed
    /// when this returns; [`Cluster::leave`] stops it.
    pub async fn serve_rest<F, Fut>(self: &Arc<Self>, handle: F) -> anyhow::Result<()>
    where
        F: Fn(String, Bytes) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = RestAnswer> + Send + 'static,
    {
        let mut requests = self
            .client
            .subscribe(rest_subject(&self.node_id))
            .await
            .context("cannot subscribe to this node's REST subject")?;
        let client = self.client.clone();
        let handle = Arc::new(handle);
        let task = tokio::spawn(async move {
            while let Some(msg) = requests.next().await {
                let Some(reply) = msg.reply.clone() else { continue };
                let path = msg.headers.as_ref().and_then(|h| h.get(PATH_HEADER)).map(|v| v.as_str().to_string());
                let (client, handle) = (client.clone(), handle.clone());
                tokio::spawn(async move {
                    let answer = match path {
                        Some(path) => handle(path, msg.payload).await,
                        None => RestAnswer {
                            status: 400,
                            content_type: Some("text/plain; charset=utf-8".into()),
                            retry_after: None,
                            body: Bytes::from_static(b"a forwarded request without Callgate-Path"),
                        },
                    };
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(STATUS_HEADER, answer.status.to_string());
                    if let Some(ct) = answer.content_type {
                        headers.insert(CONTENT_TYPE_HEADER, ct);
                    }
                    if let Some(ra) = answer.retry_after {
                        headers.insert(RETRY_AFTER_HEADER, ra);
                    }
                    if let Err(e) = client.publish_with_headers(reply, headers, answer.body).await {
                        tracing::warn!(error = %e, "cluster: cannot send the answer of a forwarded REST request");
                    }
                });
            }
        });
        *self.rest_server.lock() = Some(task);
        Ok(())
    }

    /// Answers this node's stream subjects (docs/cluster.md "Streams across nodes"):
    /// `callgate.stream.pull.<key>` requests (a JSON body; `handle` gives the JSON answer) and
    /// `callgate.stream.end.<key>` notices (no answer; `notice` takes the body). Subscribed
    /// when this returns; [`Cluster::leave`] stops them.
    pub async fn serve_streams<F, Fut, N>(self: &Arc<Self>, handle: F, notice: N) -> anyhow::Result<()>
    where
        F: Fn(Bytes) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Bytes> + Send + 'static,
        N: Fn(Bytes) + Send + 'static,
    {
        let mut pulls = self
            .client
            .subscribe(stream_subject(PULL, &self.node_id))
            .await
            .context("cannot subscribe to this node's stream pull subject")?;
        let mut ends = self
            .client
            .subscribe(stream_subject(END, &self.node_id))
            .await
            .context("cannot subscribe to this node's stream end subject")?;
        let client = self.client.clone();
        let handle = Arc::new(handle);
        let pull_task = tokio::spawn(async move {
            while let Some(msg) = pulls.next().await {
                let Some(reply) = msg.reply.clone() else { continue };
                let (client, handle) = (client.clone(), handle.clone());
                tokio::spawn(async move {
                    let answer = handle(msg.payload).await;
                    if let Err(e) = client.publish(reply, answer).await {
                        tracing::warn!(error = %e, "cluster: cannot answer a stream pull request");
                    }
                });
            }
        });
        let end_task = tokio::spawn(async move {
            while let Some(msg) = ends.next().await {
                notice(msg.payload);
            }
        });
        self.stream_servers.lock().extend([pull_task, end_task]);
        Ok(())
    }

    /// A stream pull request to `node` (its answer within `request_timeout_ms`).
    pub async fn stream_request(&self, node: &str, body: Bytes) -> Result<Bytes, ForwardError> {
        use async_nats::RequestErrorKind as K;
        let request = async_nats::Request::new().payload(body).timeout(Some(self.request_timeout()));
        let reply =
            self.client.send_request(stream_subject(PULL, node), request).await.map_err(|e| match e.kind() {
                K::NoResponders => ForwardError::Gone,
                K::TimedOut => ForwardError::TimedOut,
                K::Other => ForwardError::Nats(e.to_string()),
            })?;
        Ok(reply.payload)
    }

    /// A stream end notice to `node` (fire and forget: a node that is gone has nobody to tell).
    pub async fn stream_notice(&self, node: &str, body: Bytes) {
        if let Err(e) = self.client.publish(stream_subject(END, node), body).await {
            tracing::warn!(node, error = %e, "cluster: cannot send a stream end notice");
        }
    }

    /// Leaves the directory (graceful shutdown): stops the heartbeat and deletes this node's
    /// entries, within `request_timeout_ms`; what is not deleted then expires with the lease.
    pub async fn leave(&self) {
        if let Some(t) = self.heartbeat.lock().take() {
            t.abort();
        }
        if let Some(t) = self.rest_server.lock().take() {
            t.abort();
        }
        for t in self.stream_servers.lock().drain(..) {
            t.abort();
        }
        for t in self.watchers.lock().drain(..) {
            t.abort();
        }
        let mut b = self.beats.lock().await;
        if b.left {
            return;
        }
        b.left = true;
        let announced = std::mem::take(&mut b.announced);
        let work = async {
            let stores = self.stores().await?;
            for kind in Kind::ALL {
                let store = &stores.kinds[kind.index()];
                futures_util::stream::iter(announced[kind.index()].keys().cloned().collect::<Vec<_>>())
                    .map(|k| {
                        let store = store.clone();
                        async move { store.delete(k).await }
                    })
                    .buffer_unordered(CONCURRENCY)
                    .try_collect::<Vec<_>>()
                    .await?;
            }
            stores.nodes.delete(key_of(&self.node_id)).await?;
            anyhow::Ok(())
        };
        match tokio::time::timeout(self.request_timeout(), work).await {
            Ok(Ok(())) => tracing::info!("cluster: left the directory"),
            Ok(Err(e)) => tracing::warn!(
                error = format!("{e:#}"),
                "cluster: could not remove this node's entries; they expire after cluster.lease_ms"
            ),
            Err(_) => {
                tracing::warn!("cluster: removing this node's entries timed out; they expire after cluster.lease_ms")
            }
        }
        // Whatever was published is sent before the connection goes.
        let _ = tokio::time::timeout(self.request_timeout(), self.client.flush()).await;
    }
}

fn str_field<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or("")
}

/// The bucket `name` with `max_age = lease`: created, or the existing one if its age is the
/// same; a different one is an error (every node of a cluster must use the same `lease_ms`).
async fn bucket(js: &jetstream::Context, name: &str, lease: Duration) -> anyhow::Result<kv::Store> {
    use jetstream::stream::{Config, DiscardPolicy, StorageType};
    // The stream of a KV bucket as the KV convention has it (what `create_key_value` makes;
    // that one first asks for the account's info, whose answer from a NATS 2.9 server, the
    // Debian package, this client cannot read).
    let config = Config {
        name: format!("KV_{name}"),
        description: Some("callgate cluster directory (docs/cluster.md)".to_string()),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age: lease,
        // Soft state: memory is enough; a NATS restart that loses it costs one heartbeat (the
        // buckets are made again and every node writes all its entries again).
        storage: StorageType::Memory,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    };
    let created = js.create_stream(config).await.err();
    let store = js.get_key_value(name).await.with_context(|| match &created {
        Some(e) => format!("JetStream bucket {name}: cannot create it ({e}) nor open it"),
        None => format!("JetStream bucket {name}: created, but cannot open it"),
    })?;
    let theirs = store.stream.cached_info().config.max_age;
    if theirs != lease {
        bail!(
            "JetStream bucket {name} exists with a lease (max_age) of {} ms, this node's cluster.lease_ms is {} ms: \
             every node of a cluster must use the same lease_ms",
            theirs.as_millis(),
            lease.as_millis()
        );
    }
    Ok(store)
}

/// The keys of a bucket (a deleted one too, until its delete marker expires), from one stream
/// info request. (`Store::keys` runs an ordered consumer per call, which is heavier for the
/// server, and against NATS 2.9 with entries written meanwhile it did not always end.)
async fn keys(store: &kv::Store) -> anyhow::Result<Vec<String>> {
    let subjects: Vec<(String, usize)> =
        store.stream.info_with_subjects(format!("{}>", store.prefix)).await?.try_collect().await?;
    Ok(subjects.into_iter().filter_map(|(s, _)| s.strip_prefix(&store.prefix).map(String::from)).collect())
}

/// Every live value of a bucket, as JSON objects (a value that is not one is skipped, logged).
async fn values(store: &kv::Store) -> anyhow::Result<Vec<Map<String, Value>>> {
    let keys = keys(store).await?;
    let got: Vec<Option<Bytes>> = futures_util::stream::iter(keys.clone())
        .map(|k| {
            let store = store.clone();
            async move { store.get(k).await }
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut out = Vec::with_capacity(got.len());
    // A deleted key, or one that expired between the listing and the read, is `None`: skipped.
    for (k, v) in keys.iter().zip(got) {
        let Some(bytes) = v else { continue };
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => out.push(m),
            _ => {
                tracing::warn!(bucket = %store.name, key = %k, "cluster: a directory entry is not a JSON object; skipped")
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_kv_keys_and_distinct() {
        let ids = ["abc@127.0.0.1", "/127.0.0.1:5555/10.0.0.1:8080-a1b2", "call id with spaces", "ü"];
        let keys: HashSet<String> = ids.iter().map(|i| key_of(i)).collect();
        assert_eq!(keys.len(), ids.len());
        for k in &keys {
            assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || "-_=./".contains(c)), "{k}");
            assert!(!k.starts_with('.') && !k.ends_with('.'), "{k}");
        }
    }

    #[test]
    fn announced_objects_name_their_owner_and_keep_no_secret() {
        let obj = serde_json::json!({"sessionId": "s1", "nodeId": "old", "sipPassword": "pw", "appKey": "a"});
        let obj = obj.as_object().unwrap();
        let text = serde_json::to_string(&Announced { obj, owner: "n1@127.0.0.1" }).unwrap();
        let back: Map<String, Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(back.get("nodeId"), Some(&Value::from("n1@127.0.0.1")));
        assert_eq!(back.get("appKey"), Some(&Value::from("a")));
        assert!(!back.contains_key("sipPassword"), "{text}");
        assert_eq!(text.matches("nodeId").count(), 1, "{text}");
    }
}
