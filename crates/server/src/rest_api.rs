//! The REST API for backends: `/rest-api/...` on the HTTP port.
//!
//! | endpoint | body | answer |
//! |---|---|---|
//! | `/connection/find` | filter: any connection fields, all must match | `200` list of connections, `404` none |
//! | `/connection/find_all` | none | `200` list, `404` none |
//! | `/connection/terminate` | `{sessionId}` | `200`, `404` unknown session |
//! | `/data/send` | `{sessionId, payload, operationId?, nodeId?}` | `200` empty (client gets `OnDataEvent`), `404` unknown session |
//! | `/stream/find` | filter: any stream fields (`mediaSessionId`, `name`, `published`, `status`, …), all must match; `display` ignored | `200` list of stream objects, `404` none |
//! | `/stream/find_all` | none | `200` list, `404` none |
//! | `/call/find` | filter: any call fields (`callId`, `callee`, `status`, `sessionId`, …), all must match | `200` list of call objects, `404` none |
//! | `/call/find_all` | none | `200` list, `404` none |
//! | `/call/terminate` | `{callId}` | `200` (BYE/CANCEL; the client gets `finish FINISH`), `404` unknown call |
//! | `/call/startup` | `{callId, callee, sipLogin, sipDomain, sipPassword?, sipAuthenticationName?, sipOutboundProxy?, sipPort?, appKey?, visibleName?, hasAudio?, toStream?, restClientConfig?}` | `200` empty (progress as `CallStatusEvent`s), `400` missing/unsupported field, `409` callId (or the `toStream` name) in use |
//! | `/call/hold`, `/call/unhold` | `{callId}` | `200` (re-INVITE sent), `404` unknown, `409` not established |
//! | `/call/transfer` | `{callId, target}` | `200` (REFER sent), `400`, `404`, `409` |
//! | `/call/send_dtmf` | `{callId, dtmf, type?: RFC2833\|INFO\|INFO_RELAY}` | `200`, `400`, `404`, `409` |
//! | `/cluster/nodes` | none | `200` list of the live nodes (`[cluster]`), `404` not a cluster member, `503` directory unreachable |
//! | `/stream/snapshot` | `{streamName}` | `200` `{data: <base64 PNG>}` of the stream's next VP8 keyframe, `404` no such stream published, `409` it cannot be taken (not publishing yet, no video, H.264, no keyframe within 5 s; the reason as text), `503` too many snapshots at once |
//! | `/stream/terminate` | filter as `find`, or `{mediaSessionIds:[…]}`; `{}` = every stream | `200` (clients get `Stopped by rest /terminate`), `404` none matched |
//!
//! A body that is not a JSON object, or lacks a required field, gets `400` with a reason.
//!
//! `[cluster]` (docs/cluster.md): the `find` and `find_all` answers of every kind hold this
//! node's objects and the other nodes' from the cluster directory (each with its owner's
//! `nodeId`); when the directory cannot be read they answer `503` with the reason. Requests
//! for one object (`/connection/terminate` and `/data/send` by `sessionId`, `/call/terminate`,
//! `hold`, `unhold`, `transfer`, `send_dtmf` by `callId`) that this node does not hold go to
//! the owner the directory names ([`cluster_route`]), whose answer is the answer;
//! `/stream/terminate` runs on every live node; `/stream/snapshot` of a name not published here
//! asks the other live nodes. An owner that does not answer within
//! `request_timeout_ms` gives `503` with the reason.
//!
//! Each handler's `#[utoipa::path]` annotation is its OpenAPI description (`crate::openapi`,
//! served at `/rest-api/openapi.json`); a new route needs one (tests/tests/openapi.rs).
//!
//! Secure defaults (issue 14, issue 11): HTTP Basic auth (`[rest_api] username/password`) or a
//! bearer token (`[rest_api] tokens`) whenever credentials are set, and always on a non-loopback bind (the config refuses to start without
//! them there); no CORS headers unless `cors_allow_origin` lists origins; connection objects are
//! shown without `sipPassword` ([`crate::secrets`]), and cannot be searched by it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use callgate_proto::info;
use serde_json::{Map, Value};

use crate::node::Shared;

pub fn router(shared: Arc<Shared>) -> Router {
    let r = routes(&shared)
        // `[cluster]`: requests for other nodes' objects go to their owners (inside the
        // in-flight limit: a forwarded request holds its permit until the owner answers).
        .layer(axum::middleware::from_fn_with_state(shared.clone(), cluster_route))
        .layer(axum::middleware::from_fn_with_state(InFlight::new(&shared.cfg.limits), in_flight_guard));
    let r = if shared.cfg.rest_api.requires_auth() {
        r.layer(axum::middleware::from_fn_with_state(shared.clone(), basic_auth))
    } else {
        // Config validation allows this on a loopback bind only.
        tracing::warn!(
            http_bind = %shared.cfg.server.http_bind,
            "the REST API has no credentials: any local process may use it \
             (set rest_api.username and rest_api.password to require HTTP Basic auth)"
        );
        r
    };
    // Outermost: a page's request is refused before anything else looks at it.
    r.layer(axum::middleware::from_fn_with_state(shared.clone(), browser_guard)).with_state(shared)
}

/// The routes with their body limit, and nothing else: what [`router`] guards, and what runs
/// the requests other nodes forward to this one ([`forwarded_router`]).
fn routes(shared: &Shared) -> Router<Arc<Shared>> {
    Router::new()
        .route("/rest-api/connection/find", post(find))
        .route("/rest-api/connection/find_all", post(find_all).get(find_all))
        .route("/rest-api/connection/terminate", post(terminate))
        .route("/rest-api/data/send", post(data_send))
        .route("/rest-api/stream/find", post(stream_find))
        .route("/rest-api/stream/find_all", post(stream_find_all).get(stream_find_all))
        .route("/rest-api/stream/terminate", post(stream_terminate))
        .route("/rest-api/stream/snapshot", post(stream_snapshot))
        .route("/rest-api/call/find", post(call_find))
        .route("/rest-api/call/find_all", post(call_find_all).get(call_find_all))
        .route("/rest-api/call/terminate", post(call_terminate))
        .route("/rest-api/call/startup", post(call_startup))
        .route("/rest-api/call/hold", post(call_hold))
        .route("/rest-api/call/unhold", post(call_unhold))
        .route("/rest-api/call/transfer", post(call_transfer))
        .route("/rest-api/call/send_dtmf", post(call_send_dtmf))
        .route("/rest-api/cluster/nodes", post(cluster_nodes).get(cluster_nodes))
        // `[limits]`: a body over `max_rest_body_bytes` gets 413; past `max_rest_in_flight`
        // requests at once, 503 with Retry-After (checked after auth: refused requests cost
        // nothing here).
        .layer(axum::extract::DefaultBodyLimit::max(shared.cfg.limits.max_rest_body_bytes))
}

/// Marks a request another node forwarded to this one: it is answered here, never forwarded
/// again. (An extension: nothing from the network can set it.)
#[derive(Clone, Copy)]
struct Forwarded;

/// How `[cluster]` routes a request this node cannot answer by itself.
#[derive(Clone, Copy)]
enum Route {
    /// One object, named by this field of the body, of this kind: to its owner.
    Owner(crate::cluster::Kind, &'static str),
    /// To every live node (`/stream/terminate`: a filter may match streams anywhere).
    Everywhere,
    /// To the other live nodes when not found here; the first one's `200` is the answer
    /// (`/stream/snapshot`: the directory is keyed by stream id, not by name).
    Anywhere,
}

fn route_of(path: &str) -> Option<Route> {
    use crate::cluster::Kind;
    Some(match path {
        "/rest-api/connection/terminate" | "/rest-api/data/send" => Route::Owner(Kind::Sessions, "sessionId"),
        "/rest-api/call/terminate"
        | "/rest-api/call/hold"
        | "/rest-api/call/unhold"
        | "/rest-api/call/transfer"
        | "/rest-api/call/send_dtmf" => Route::Owner(Kind::Calls, "callId"),
        "/rest-api/stream/terminate" => Route::Everywhere,
        "/rest-api/stream/snapshot" => Route::Anywhere,
        _ => return None,
    })
}

/// `[cluster]` routing (module docs). The request runs here first: an object this node holds
/// is answered at once, and a `404` means it is not here (nothing was done), so only then is
/// the directory asked who owns it. `/stream/terminate` also runs on every other live node.
async fn cluster_route(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let (Some(cluster), Some(route)) = (s.cluster.clone(), route_of(req.uri().path())) else {
        return next.run(req).await;
    };
    if req.method() != axum::http::Method::POST || req.extensions().get::<Forwarded>().is_some() {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, s.cfg.limits.max_rest_body_bytes).await {
        Ok(b) => b,
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "the body is over limits.max_rest_body_bytes"),
    };
    let here = next.run(Request::from_parts(parts, axum::body::Body::from(body.clone()))).await;
    match route {
        Route::Owner(kind, field) => {
            if here.status() != StatusCode::NOT_FOUND {
                return here;
            }
            let id = match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Object(o)) => o.get(field).and_then(Value::as_str).map(String::from),
                _ => None,
            };
            let Some(id) = id else { return here };
            let owner = match cluster.owner(kind, &id).await {
                Ok(Some(owner)) if owner != cluster.node_id() => owner,
                Ok(_) => return here,
                Err(e) => {
                    tracing::warn!(bucket = kind.bucket(), error = format!("{e:#}"), "cluster directory unreadable");
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not on this node, and the cluster directory cannot be read: {e:#}"),
                    );
                }
            };
            match cluster.forward(&owner, &path, body, std::time::Duration::ZERO).await {
                Ok(answer) => forwarded_answer(answer),
                Err(e) => owner_unreachable(&owner, e),
            }
        }
        Route::Everywhere | Route::Anywhere => {
            if matches!(route, Route::Anywhere) && here.status() != StatusCode::NOT_FOUND {
                return here;
            }
            let nodes = match cluster.other_nodes().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "cluster directory unreadable");
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("the cluster directory cannot be read (other nodes not reached): {e:#}"),
                    );
                }
            };
            // A snapshot may wait for its keyframe on the owner.
            let extra = match route {
                Route::Anywhere => crate::streams::SNAPSHOT_WAIT,
                _ => std::time::Duration::ZERO,
            };
            let answers =
                futures_util::future::join_all(nodes.iter().map(|n| cluster.forward(n, &path, body.clone(), extra)))
                    .await;
            // Done somewhere: 200. Otherwise the first node that could not be asked (503), else
            // this node's own answer (404, or 400 for a bad body).
            if here.status() == StatusCode::OK {
                return here;
            }
            // `Anywhere`: the node that has it answers with something else than 404 (a 409 of
            // `/stream/snapshot` is that node's answer, not "not found").
            let mut unreachable = None;
            let mut found = None;
            for (node, a) in nodes.iter().zip(answers) {
                match a {
                    Ok(a) if a.status == 200 => return forwarded_answer(a),
                    Ok(a) if a.status != 404 && matches!(route, Route::Anywhere) => found = found.or(Some(a)),
                    Ok(_) => {}
                    Err(e) => unreachable = unreachable.or(Some((node.clone(), e))),
                }
            }
            if let Some(a) = found {
                return forwarded_answer(a);
            }
            match unreachable {
                Some((node, e)) if here.status() == StatusCode::NOT_FOUND => owner_unreachable(&node, e),
                _ => here,
            }
        }
    }
}

fn forwarded_answer(a: crate::cluster::RestAnswer) -> Response {
    let mut r = Response::new(axum::body::Body::from(a.body));
    *r.status_mut() = StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (name, value) in [(header::CONTENT_TYPE, a.content_type), (header::RETRY_AFTER, a.retry_after)] {
        if let Some(v) = value.and_then(|v| header::HeaderValue::from_str(&v).ok()) {
            r.headers_mut().insert(name, v);
        }
    }
    r
}

fn owner_unreachable(node: &str, e: crate::cluster::ForwardError) -> Response {
    use crate::cluster::ForwardError as F;
    let why = match e {
        F::Gone => {
            "is gone (nothing answers on its subject; its directory entries expire with cluster.lease_ms)".to_string()
        }
        F::TimedOut => "did not answer within cluster.request_timeout_ms".to_string(),
        F::Nats(e) => format!("could not be asked: {e}"),
    };
    tracing::warn!(node, %why, "cluster: a REST request for another node's object failed");
    error(StatusCode::SERVICE_UNAVAILABLE, format!("the node that holds it ({node}) {why}"))
}

/// What answers the requests other nodes forward to this one: [`routes`] behind the in-flight
/// limit, no credentials (the asking node checked them), every request marked [`Forwarded`].
pub fn forwarded_router(shared: Arc<Shared>) -> Router {
    routes(&shared)
        .layer(axum::middleware::from_fn_with_state(InFlight::new(&shared.cfg.limits), in_flight_guard))
        .with_state(shared)
}

/// Runs a forwarded request (`path`, JSON `body`) through `router` ([`forwarded_router`]).
/// Only the paths [`cluster_route`] forwards are answered; any other gets `404`.
pub async fn answer_forwarded(router: Router, path: String, body: Bytes, limit: usize) -> crate::cluster::RestAnswer {
    let text = |status: u16, why: &str| crate::cluster::RestAnswer {
        status,
        content_type: Some("text/plain; charset=utf-8".into()),
        retry_after: None,
        body: Bytes::from(why.to_string()),
    };
    if route_of(&path).is_none() {
        return text(404, "not a request that nodes forward");
    }
    let Ok(mut req) = axum::http::Request::post(&path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(body))
    else {
        return text(400, "a forwarded request with a bad path");
    };
    req.extensions_mut().insert(Forwarded);
    let mut router = router;
    let resp = match std::future::poll_fn(|cx| <Router as tower_service::Service<Request>>::poll_ready(&mut router, cx))
        .await
    {
        Ok(()) => <Router as tower_service::Service<Request>>::call(&mut router, req).await,
        Err(e) => match e {},
    };
    let Ok(resp) = resp;
    let (parts, body) = resp.into_parts();
    let header_of = |name| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(String::from);
    let (content_type, retry_after) = (header_of(header::CONTENT_TYPE), header_of(header::RETRY_AFTER));
    let status = parts.status.as_u16();
    match axum::body::to_bytes(body, limit).await {
        Ok(body) => crate::cluster::RestAnswer { status, content_type, retry_after, body },
        Err(_) => text(500, "the answer could not be read"),
    }
}

/// Refuses what a web page could do to the API without reading its answers (CORS only governs
/// reading): a cross-site POST is a "simple request" a browser sends without asking, and an
/// empty `/stream/terminate` ends every stream. Browsers name the page in `Origin` on every POST,
/// so a request whose `Origin` is not in `cors_allow_origin` is refused (`403`); backends and
/// tools send no `Origin`. Without credentials (loopback only), a `Host` that is not a loopback
/// name or an address is refused too: that is a page on a DNS name rebound to this host.
async fn browser_guard(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let allowed = &s.cfg.rest_api.cors_allow_origin;
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let ok = allowed.iter().any(|a| a == "*" || a.as_bytes() == origin.as_bytes());
        if !ok {
            tracing::info!(origin = ?origin, path = %req.uri().path(), "REST API request from a web page refused");
            return error(
                StatusCode::FORBIDDEN,
                "requests from web pages are refused unless their origin is in rest_api.cors_allow_origin",
            );
        }
    }
    if !s.cfg.rest_api.requires_auth() {
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if !host.is_empty() && !host_is_local_or_address(host) {
            tracing::info!(host, path = %req.uri().path(), "REST API request for a foreign host name refused");
            return error(StatusCode::FORBIDDEN, "unexpected Host for a REST API without credentials");
        }
    }
    next.run(req).await
}

/// `localhost`, or an IP address (either with a port): names a DNS rebinding page cannot use.
pub(crate) fn host_is_local_or_address(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => return v6.split_once(']').is_some_and(|(a, _)| a.parse::<std::net::Ipv6Addr>().is_ok()),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

/// The CORS layer for the configured origins; `None` (no CORS headers at all) when there are
/// none. A listed origin is echoed only when the request's `Origin` matches it exactly.
pub fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = match origins {
        [] => return None,
        [any] if any == "*" => AllowOrigin::any(),
        // Checked by config validation; an unparsable value would simply never match.
        list => AllowOrigin::list(list.iter().filter_map(|o| o.parse::<header::HeaderValue>().ok())),
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([axum::http::Method::POST, axum::http::Method::GET])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::HeaderName::from_static("x-requested-with"),
            ]),
    )
}

/// An error answer: status + a short text reason.
fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], reason.into()).into_response()
}

/// A request the API refuses before doing anything: `400` with the reason. Small, unlike a
/// `Response`, so the helpers below can return it in a `Result`.
struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self.0)
    }
}

fn parse_object(body: &Bytes) -> Result<Map<String, Value>, BadRequest> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(BadRequest("body must be a JSON object".into())),
        Err(e) => Err(BadRequest(format!("body is not valid JSON: {e}"))),
    }
}

/// A `find` filter may not name a secret: matching on it would tell the caller whether a guess
/// is right.
fn filter_object(body: &Bytes) -> Result<Map<String, Value>, BadRequest> {
    let filter = parse_object(body)?;
    match filter.keys().find(|k| crate::secrets::is_view_secret(k)) {
        Some(k) => Err(BadRequest(format!("{k} cannot be used in a filter"))),
        None => Ok(filter),
    }
}

/// A list of objects as JSON, without their secrets ([`crate::secrets`]); `404` when empty.
fn redacted_or_404<'a>(items: impl ExactSizeIterator<Item = &'a Map<String, Value>>) -> Response {
    if items.len() == 0 {
        return error(StatusCode::NOT_FOUND, "not found");
    }
    let list: Vec<crate::secrets::Redacted<'_>> = items.map(crate::secrets::Redacted::new).collect();
    Json(list).into_response()
}

/// A find answer across the cluster: this node's `local` objects, then the other nodes' from the
/// directory (`[cluster]`; none on a single node); `503` when the directory cannot be read.
async fn cluster_wide(
    s: &Shared,
    kind: crate::cluster::Kind,
    filter: &Map<String, Value>,
    local: Vec<&Map<String, Value>>,
) -> Response {
    let remote = match &s.cluster {
        None => Vec::new(),
        Some(c) => match c.find(kind, filter).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(bucket = kind.bucket(), error = format!("{e:#}"), "cluster directory unreadable");
                return error(StatusCode::SERVICE_UNAVAILABLE, format!("the cluster directory cannot be read: {e:#}"));
            }
        },
    };
    redacted_or_404(local.into_iter().chain(remote.iter()).collect::<Vec<_>>().into_iter())
}

/// `/cluster/nodes`: the live nodes of the cluster, each with its load.
#[utoipa::path(
    method(get, post),
    path = "/rest-api/cluster/nodes",
    tag = "cluster",
    summary = "The live nodes of the cluster",
    responses(
        (status = 200, description = "Every live node (this one included), ordered by nodeId", body = Vec<crate::rest_types::ClusterNode>),
        (status = 404, description = "This node is not a cluster member (`[cluster] nats_url` is empty)", body = String, content_type = "text/plain"),
        (status = 503, description = "The cluster directory cannot be read (NATS unreachable); the reason as text", body = String, content_type = "text/plain"),
    ),
)]
async fn cluster_nodes(State(s): State<Arc<Shared>>) -> Response {
    let Some(c) = &s.cluster else {
        return error(StatusCode::NOT_FOUND, "this node is not a cluster member ([cluster] nats_url is empty)");
    };
    match c.nodes().await {
        Ok(nodes) => Json(nodes).into_response(),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "cluster directory unreadable");
            error(StatusCode::SERVICE_UNAVAILABLE, format!("the cluster directory cannot be read: {e:#}"))
        }
    }
}

#[utoipa::path(
    post,
    path = "/rest-api/call/find",
    tag = "call",
    summary = "Calls matching a filter",
    request_body(content = Option<crate::rest_types::Filter>, description = "Any call fields; all must be equal"),
    responses(
        (status = 200, description = "The matching calls", body = Vec<crate::rest_types::CallObject>),
        (status = 400, description = "The body is not a JSON object or lacks a required field; the reason as text", body = String, content_type = "text/plain"),
        (status = 404, description = "No call matched", body = String, content_type = "text/plain"),
    ),
)]
async fn call_find(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match filter_object(&body) {
        Ok(filter) => {
            let local = s.calls.find(&filter);
            cluster_wide(&s, crate::cluster::Kind::Calls, &filter, local.iter().collect()).await
        }
        Err(r) => r.into_response(),
    }
}

#[utoipa::path(
    method(get, post),
    path = "/rest-api/call/find_all",
    tag = "call",
    summary = "Every call",
    responses(
        (status = 200, description = "Every call", body = Vec<crate::rest_types::CallObject>),
        (status = 404, description = "No call", body = String, content_type = "text/plain"),
    ),
)]
async fn call_find_all(State(s): State<Arc<Shared>>) -> Response {
    let local = s.calls.find(&Map::new());
    cluster_wide(&s, crate::cluster::Kind::Calls, &Map::new(), local.iter().collect()).await
}

#[utoipa::path(
    post,
    path = "/rest-api/call/terminate",
    tag = "call",
    summary = "End a call",
    request_body = crate::rest_types::CallIdRequest,
    responses(
        (status = 200, description = "BYE or CANCEL sent; the client gets `finish FINISH`"),
        (status = 400, description = "The body is not a JSON object or lacks a required field; the reason as text", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown call", body = String, content_type = "text/plain"),
    ),
)]
async fn call_terminate(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let obj = match parse_object(&body) {
        Ok(o) => o,
        Err(r) => return r.into_response(),
    };
    let Some(id) = obj.get("callId").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "callId is required");
    };
    if s.calls.terminate(id).await {
        StatusCode::OK.into_response()
    } else {
        error(StatusCode::NOT_FOUND, "call not found")
    }
}

/// The REST API's share of `[limits]`: requests being handled at once.
#[derive(Clone)]
struct InFlight {
    permits: Arc<tokio::sync::Semaphore>,
    limit: usize,
    retry_after_s: u32,
}

impl InFlight {
    fn new(l: &crate::config::LimitsSection) -> InFlight {
        InFlight {
            permits: Arc::new(tokio::sync::Semaphore::new(l.max_rest_in_flight)),
            limit: l.max_rest_in_flight,
            retry_after_s: l.retry_after_s,
        }
    }
}

/// Past `max_rest_in_flight` requests at once: `503` with `Retry-After` at once (a request is
/// never queued: under overload a queue only makes every answer late).
async fn in_flight_guard(State(g): State<InFlight>, req: Request, next: Next) -> Response {
    let Ok(_permit) = g.permits.try_acquire() else {
        let r = crate::admission::Refused::RestInFlight { limit: g.limit };
        r.record();
        return overloaded(g.retry_after_s, r.info());
    };
    let gauge = metrics::gauge!("callgate_rest_in_flight");
    gauge.increment(1.0);
    // Decremented however the request ends (its future may be dropped mid-way).
    struct Done(metrics::Gauge);
    impl Drop for Done {
        fn drop(&mut self) {
            self.0.decrement(1.0);
        }
    }
    let _done = Done(gauge);
    next.run(req).await
}

/// `503 Service Unavailable` with `Retry-After` and the reason.
fn overloaded(retry_after_s: u32, reason: String) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, reason);
    r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(retry_after_s));
    r
}

fn rest_call_answer(s: &Shared, r: Result<(), crate::calls::RestCallError>) -> Response {
    use crate::calls::RestCallError as E;
    match r {
        Err(E::Overloaded(why)) => overloaded(s.cfg.limits.retry_after_s, why),
        Ok(()) => StatusCode::OK.into_response(),
        Err(E::BadRequest(why)) => error(StatusCode::BAD_REQUEST, why),
        Err(E::NotFound(why)) => error(StatusCode::NOT_FOUND, why),
        Err(E::Conflict(why)) => error(StatusCode::CONFLICT, why),
        Err(E::Failed(why)) => error(StatusCode::INTERNAL_SERVER_ERROR, why),
    }
}

/// `/call/startup`: a SIP call placed by the server, with no browser (docs/hooks.md §12).
#[utoipa::path(
    post,
    path = "/rest-api/call/startup",
    tag = "call",
    summary = "Place a SIP call with no browser",
    request_body = crate::rest_types::CallStartupRequest,
    responses(
        (status = 200, description = "The call is placed; its progress goes to the backend as `CallStatusEvent`s"),
        (status = 400, description = "A missing or unsupported field, an unknown appKey, a destination not allowed; the reason as text", body = String, content_type = "text/plain"),
        (status = 409, description = "The callId is in use, or the toStream name (or the callId as a mediaSessionId) is taken", body = String, content_type = "text/plain"),
        (status = 500, description = "The SIP or media side could not start the call", body = String, content_type = "text/plain"),
        (status = 503, description = "[limits] max_calls calls (or, with toStream, max_streams streams) are live (with Retry-After)", body = String, content_type = "text/plain"),
    ),
)]
async fn call_startup(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse_object(&body) {
        Ok(obj) => {
            let streams: Arc<dyn crate::calls::CallStreams> = Arc::new(crate::node::CallStreamPort(s.streams.clone()));
            rest_call_answer(&s, crate::calls::rest_startup(&s.calls, &s.node, &s.apps, obj, &streams))
        }
        Err(r) => r.into_response(),
    }
}

async fn call_action(s: &Shared, method: callgate_hooks::HookMethod, body: &Bytes) -> Response {
    match parse_object(body) {
        Ok(obj) => rest_call_answer(s, s.calls.rest_action(method, obj).await),
        Err(r) => r.into_response(),
    }
}

#[utoipa::path(
    post,
    path = "/rest-api/call/hold",
    tag = "call",
    summary = "Put a call on hold",
    request_body = crate::rest_types::CallIdRequest,
    responses(
        (status = 200, description = "re-INVITE (sendonly) sent"),
        (status = 400, description = "The body is not a JSON object or lacks a required field; the reason as text", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown call", body = String, content_type = "text/plain"),
        (status = 409, description = "The call is not established", body = String, content_type = "text/plain"),
        (status = 500, description = "The SIP side could not carry it out", body = String, content_type = "text/plain"),
    ),
)]
async fn call_hold(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    call_action(&s, callgate_hooks::HookMethod::Hold, &body).await
}

#[utoipa::path(
    post,
    path = "/rest-api/call/unhold",
    tag = "call",
    summary = "Take a call off hold",
    request_body = crate::rest_types::CallIdRequest,
    responses(
        (status = 200, description = "re-INVITE (sendrecv) sent"),
        (status = 400, description = "The body is not a JSON object or lacks a required field; the reason as text", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown call", body = String, content_type = "text/plain"),
        (status = 409, description = "The call is not established", body = String, content_type = "text/plain"),
        (status = 500, description = "The SIP side could not carry it out", body = String, content_type = "text/plain"),
    ),
)]
async fn call_unhold(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    call_action(&s, callgate_hooks::HookMethod::Unhold, &body).await
}

#[utoipa::path(
    post,
    path = "/rest-api/call/transfer",
    tag = "call",
    summary = "Transfer a call",
    request_body = crate::rest_types::CallTransferRequest,
    responses(
        (status = 200, description = "REFER sent; progress as `TransferStatusEvent`s"),
        (status = 400, description = "The body is not a JSON object or lacks a required field; the reason as text", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown call", body = String, content_type = "text/plain"),
        (status = 409, description = "The call is not established", body = String, content_type = "text/plain"),
        (status = 500, description = "The SIP side could not carry it out", body = String, content_type = "text/plain"),
    ),
)]
async fn call_transfer(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    call_action(&s, callgate_hooks::HookMethod::Transfer, &body).await
}

#[utoipa::path(
    post,
    path = "/rest-api/call/send_dtmf",
    tag = "call",
    summary = "Send DTMF in a call",
    request_body = crate::rest_types::CallDtmfRequest,
    responses(
        (status = 200, description = "The digits are sent"),
        (status = 400, description = "The body is not a JSON object or lacks a required field; the reason as text", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown call", body = String, content_type = "text/plain"),
        (status = 409, description = "The call is not established", body = String, content_type = "text/plain"),
        (status = 500, description = "The SIP side could not carry it out", body = String, content_type = "text/plain"),
    ),
)]
async fn call_send_dtmf(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    call_action(&s, callgate_hooks::HookMethod::SendDtmf, &body).await
}

#[utoipa::path(
    post,
    path = "/rest-api/connection/find",
    tag = "connection",
    summary = "Connections matching a filter",
    request_body(content = Option<crate::rest_types::Filter>, description = "Any connection fields; all must be equal"),
    responses(
        (status = 200, description = "The matching connections", body = Vec<crate::rest_types::ConnectionObject>),
        (status = 400, description = "The body is not a JSON object or lacks a required field; the reason as text", body = String, content_type = "text/plain"),
        (status = 404, description = "No connection matched", body = String, content_type = "text/plain"),
    ),
)]
async fn find(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match filter_object(&body) {
        Ok(filter) => {
            let local = s.sessions.select(|p| p.data_matching(&filter));
            cluster_wide(&s, crate::cluster::Kind::Sessions, &filter, local.iter().map(|m| &**m).collect()).await
        }
        Err(r) => r.into_response(),
    }
}

#[utoipa::path(
    method(get, post),
    path = "/rest-api/connection/find_all",
    tag = "connection",
    summary = "Every connection",
    responses(
        (status = 200, description = "Every connection", body = Vec<crate::rest_types::ConnectionObject>),
        (status = 404, description = "No connection", body = String, content_type = "text/plain"),
    ),
)]
async fn find_all(State(s): State<Arc<Shared>>) -> Response {
    let local = s.sessions.select(|p| Some(p.data_ref()));
    cluster_wide(&s, crate::cluster::Kind::Sessions, &Map::new(), local.iter().map(|m| &**m).collect()).await
}

fn required_str<'a>(m: &'a Map<String, Value>, field: &str) -> Result<&'a str, BadRequest> {
    match m.get(field) {
        Some(Value::String(v)) if !v.is_empty() => Ok(v),
        _ => Err(BadRequest(format!("missing string field {field}"))),
    }
}

#[utoipa::path(
    post,
    path = "/rest-api/connection/terminate",
    tag = "connection",
    summary = "End a session",
    request_body = crate::rest_types::SessionIdRequest,
    responses(
        (status = 200, description = "The client gets `fail` with `Terminated by rest /terminate` and is closed"),
        (status = 400, description = "The body is not a JSON object or lacks a required field; the reason as text", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown session", body = String, content_type = "text/plain"),
    ),
)]
async fn terminate(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let req = match parse_object(&body) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let id = match required_str(&req, "sessionId") {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let Some(h) = s.sessions.get(id) else { return error(StatusCode::NOT_FOUND, "session not found") };
    h.terminate(info::TERMINATED_BY_REST.into());
    StatusCode::OK.into_response()
}

/// `/data/send`: delivered to the client as `OnDataEvent` (SDK `APP_DATA`). REST-originated, so no
/// hook can refuse it.
#[utoipa::path(
    post,
    path = "/rest-api/data/send",
    tag = "data",
    summary = "Send data to a client",
    request_body = crate::rest_types::DataSendRequest,
    responses(
        (status = 200, description = "The client gets `OnDataEvent`"),
        (status = 400, description = "The body is not a JSON object or lacks a required field; the reason as text", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown session", body = String, content_type = "text/plain"),
    ),
)]
async fn data_send(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let req = match parse_object(&body) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let id = match required_str(&req, "sessionId") {
        Ok(id) => id.to_string(),
        Err(r) => return r.into_response(),
    };
    if !req.contains_key("payload") {
        return error(StatusCode::BAD_REQUEST, "missing field payload");
    }
    let Some(h) = s.sessions.get(&id) else { return error(StatusCode::NOT_FOUND, "session not found") };
    let mut ev = Map::new();
    ev.insert("nodeId".into(), Value::from(&*s.node_id));
    ev.insert(
        "operationId".into(),
        req.get("operationId").cloned().unwrap_or_else(|| uuid::Uuid::new_v4().to_string().into()),
    );
    ev.insert("sessionId".into(), Value::from(id));
    ev.insert("payload".into(), req["payload"].clone());
    h.send_text(crate::handlers::on_data_event(&ev));
    StatusCode::OK.into_response()
}

#[utoipa::path(
    post,
    path = "/rest-api/stream/find",
    tag = "stream",
    summary = "Streams matching a filter",
    request_body(content = Option<crate::rest_types::Filter>, description = "Any stream-object fields; all must be equal; `display` is ignored"),
    responses(
        (status = 200, description = "The matching streams", body = Vec<crate::rest_types::StreamObject>),
        (status = 400, description = "The body is not a JSON object or lacks a required field; the reason as text", body = String, content_type = "text/plain"),
        (status = 404, description = "No stream matched", body = String, content_type = "text/plain"),
    ),
)]
async fn stream_find(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse_object(&body) {
        Ok(filter) => {
            let filter = crate::streams::find_filter(filter);
            let local = crate::streams::find(&s.streams, filter.clone());
            cluster_wide(&s, crate::cluster::Kind::Streams, &filter, local.iter().collect()).await
        }
        Err(r) => r.into_response(),
    }
}

#[utoipa::path(
    method(get, post),
    path = "/rest-api/stream/find_all",
    tag = "stream",
    summary = "Every stream",
    responses(
        (status = 200, description = "Every stream", body = Vec<crate::rest_types::StreamObject>),
        (status = 404, description = "No stream", body = String, content_type = "text/plain"),
    ),
)]
async fn stream_find_all(State(s): State<Arc<Shared>>) -> Response {
    let local = crate::streams::find(&s.streams, Map::new());
    cluster_wide(&s, crate::cluster::Kind::Streams, &Map::new(), local.iter().collect()).await
}

/// `/stream/snapshot`: a PNG of the published stream's next keyframe (the SDK's `snapshot`
/// without a client: no hook is called, the backend asked).
#[utoipa::path(
    post,
    path = "/rest-api/stream/snapshot",
    tag = "stream",
    summary = "A PNG of a published stream's current picture",
    request_body = crate::rest_types::StreamSnapshotRequest,
    responses(
        (status = 200, description = "The PNG of the publisher's next VP8 keyframe, base64", body = crate::rest_types::StreamSnapshotAnswer),
        (status = 400, description = "The body is not a JSON object or lacks streamName; the reason as text", body = String, content_type = "text/plain"),
        (status = 404, description = "No stream of that name is published", body = String, content_type = "text/plain"),
        (status = 409, description = "The stream cannot give a snapshot now: not publishing yet, no video, H.264 (VP8 only), no keyframe within 5 s, or it ended; the reason as text", body = String, content_type = "text/plain"),
    ),
)]
async fn stream_snapshot(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let req = match parse_object(&body) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let name = match required_str(&req, "streamName") {
        Ok(n) => n.to_string(),
        Err(r) => return r.into_response(),
    };
    let taken = crate::streams::snapshot_png(&s.streams, &name).await;
    metrics::counter!("callgate_snapshots_total", "result" => if taken.is_ok() { "completed" } else { "failed" })
        .increment(1);
    match taken {
        Ok(png) => {
            let data = base64::engine::general_purpose::STANDARD.encode(&png);
            Json(crate::rest_types::StreamSnapshotAnswer { data }).into_response()
        }
        Err(why) if why == info::STREAM_NOT_FOUND => error(StatusCode::NOT_FOUND, why),
        Err(why) if why == info::SNAPSHOT_BUSY => overloaded(s.cfg.limits.retry_after_s, why),
        Err(why) => error(StatusCode::CONFLICT, why),
    }
}

/// `/stream/terminate`: REST-originated, so no hook can refuse it; the clients get
/// `UNPUBLISHED`/`STOPPED` with `Stopped by rest /terminate`.
#[utoipa::path(
    post,
    path = "/rest-api/stream/terminate",
    tag = "stream",
    summary = "End streams",
    request_body(content = Option<crate::rest_types::StreamTerminateRequest>, description = "No body, or `{}`, ends every stream"),
    responses(
        (status = 200, description = "The streams end; their clients get `Stopped by rest /terminate`"),
        (status = 400, description = "The body is not a JSON object or lacks a required field; the reason as text", body = String, content_type = "text/plain"),
        (status = 404, description = "No stream matched", body = String, content_type = "text/plain"),
    ),
)]
async fn stream_terminate(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let filter = match parse_object(&body) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    if crate::streams::terminate(&s.streams, filter) == 0 {
        return error(StatusCode::NOT_FOUND, "stream not found");
    }
    StatusCode::OK.into_response()
}

async fn basic_auth(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let cfg = &s.cfg.rest_api;
    let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let ok = given.is_some_and(|v| {
        if let Some(b) = v.strip_prefix("Basic ") {
            !cfg.username.is_empty()
                && base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .is_ok_and(|d| constant_time_eq(&d, format!("{}:{}", cfg.username, cfg.password).as_bytes()))
        } else if let Some(t) = v.strip_prefix("Bearer ") {
            // Every token is compared, so the time taken does not tell which one came close.
            cfg.tokens.iter().fold(false, |hit, k| constant_time_eq(t.trim().as_bytes(), k.as_bytes()) | hit)
        } else {
            false
        }
    });
    if ok {
        next.run(req).await
    } else {
        let mut r = error(StatusCode::UNAUTHORIZED, "authentication required");
        let h = r.headers_mut();
        if !cfg.username.is_empty() {
            h.append(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"callgate\""));
        }
        if !cfg.tokens.is_empty() {
            h.append(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"callgate\""));
        }
        r
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts() {
        for h in ["localhost", "LOCALHOST:8081", "127.0.0.1", "127.0.0.1:8081", "[::1]:8081", "[::1]", "10.0.0.5:80"] {
            assert!(host_is_local_or_address(h), "{h}");
        }
        for h in ["evil.example", "evil.example:8081", "localhost.evil.example", "[evil]:1", "127.0.0.1.nip.io"] {
            assert!(!host_is_local_or_address(h), "{h}");
        }
    }
}
