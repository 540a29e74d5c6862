//! The REST API's OpenAPI 3.1 description, generated (utoipa) from the `#[utoipa::path]`
//! annotations of the handlers in `rest_api.rs` and the shapes in `rest_types.rs`, and served
//! at `GET /rest-api/openapi.json`, with a page that renders it at `GET /rest-api/docs`.
//!
//! Both are served **without** the REST API's credentials and guards: they describe the API and
//! hold no data (the same document is in every build). The page is one self-contained HTML
//! file compiled into the binary (`openapi_docs.html`: no script, style or font from elsewhere,
//! and a Content-Security-Policy that forbids loading any); it fetches the JSON next to it.
//! (utoipa's Swagger UI downloads its assets at build time and its Redoc/Scalar pages load
//! theirs from a CDN, so neither fits a server that must work with no outside network.)

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi};

/// Paths served without credentials: the description itself.
const OPEN_PATHS: [&str; 2] = ["/rest-api/openapi.json", "/rest-api/docs"];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "callgate REST API",
        description = "The REST API of callgate for backends (WCS-compatible): connections, data, streams and \
SIP calls. Requests and answers are JSON; errors are `text/plain` reasons. When `[rest_api] username`/`password` \
or `tokens` are set, every `/rest-api/*` request but this description needs HTTP Basic auth or a bearer token; \
without them (loopback only) none is asked for. See docs/rest-api.md."
    ),
    paths(
        crate::rest_api::find,
        crate::rest_api::find_all,
        crate::rest_api::terminate,
        crate::rest_api::data_send,
        crate::rest_api::stream_find,
        crate::rest_api::stream_find_all,
        crate::rest_api::stream_terminate,
        crate::rest_api::stream_snapshot,
        crate::rest_api::call_find,
        crate::rest_api::call_find_all,
        crate::rest_api::call_terminate,
        crate::rest_api::call_startup,
        crate::rest_api::call_hold,
        crate::rest_api::call_unhold,
        crate::rest_api::call_transfer,
        crate::rest_api::call_send_dtmf,
        crate::rest_api::cluster_nodes,
        openapi_json,
        docs_page,
    ),
    modifiers(&Common),
    tags(
        (name = "connection", description = "Connected WebSocket clients (sessions)"),
        (name = "data", description = "Data messages to clients"),
        (name = "stream", description = "WebRTC streams"),
        (name = "call", description = "SIP calls: the clients' and those placed by /call/startup"),
        (name = "cluster", description = "The nodes of a callgate cluster ([cluster], docs/cluster.md)"),
        (name = "description", description = "This document and its rendered page"),
    )
)]
pub struct ApiDoc;

/// What every REST API operation shares, added to each: the two credential schemes (either one
/// or none, as configured) and the answers of the layers in front of the handlers.
struct Common;

impl Modify for Common {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("basicAuth", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
        components.add_security_scheme("bearerAuth", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        let text = |what: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(what)
                    .content(
                        "text/plain",
                        utoipa::openapi::ContentBuilder::new()
                            .schema(Some(utoipa::openapi::ObjectBuilder::new().schema_type(Type::String)))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let open = OPEN_PATHS.contains(&path.as_str());
            // One handler serving GET and POST gets one operationId per method (they must be unique).
            let both = item.get.is_some() && item.post.is_some();
            for (method, op) in [("get", &mut item.get), ("post", &mut item.post)] {
                let Some(op) = op else { continue };
                if both {
                    op.operation_id = op.operation_id.take().map(|id| format!("{id}_{method}"));
                }
                if open {
                    op.security = Some(Vec::new());
                    continue;
                }
                optional_body(op);
                op.security = Some(vec![
                    SecurityRequirement::default(),
                    SecurityRequirement::new("basicAuth", Vec::<String>::new()),
                    SecurityRequirement::new("bearerAuth", Vec::<String>::new()),
                ]);
                let r = &mut op.responses.responses;
                r.entry("401".into()).or_insert_with(|| {
                    text("Credentials are configured and the request has neither valid Basic auth nor a listed token")
                });
                r.entry("403".into()).or_insert_with(|| {
                    text("The request comes from a web page whose Origin is not in cors_allow_origin, or (no credentials) names a foreign Host")
                });
                r.entry("413".into()).or_insert_with(|| text("The body is over [limits] max_rest_body_bytes"));
                r.entry("503".into())
                    .or_insert_with(|| text("Over [limits] max_rest_in_flight requests at once (with Retry-After); or, in a cluster, the directory cannot be read or the node that holds the object does not answer (the reason as text)"));
            }
        }
    }
}

/// A handler that reads no body as `{}` is annotated with `Option<T>`, which utoipa writes as
/// "`null` or T"; but a JSON `null` body is refused (`400`). Written instead: the body T, not
/// required.
fn optional_body(op: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::schema::Schema;
    let Some(body) = op.request_body.as_mut() else { return };
    let mut optional = false;
    for content in body.content.values_mut() {
        if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema {
            if let Some(r) = one_of.items.iter().find(|i| matches!(i, RefOr::Ref(_))) {
                content.schema = Some(r.clone());
                optional = true;
            }
        }
    }
    if optional {
        body.required = Some(utoipa::openapi::Required::False);
    }
}

/// The document as served (built once).
pub static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serializes"));

/// The rendered page.
const DOCS_PAGE: &str = include_str!("openapi_docs.html");

/// `GET /rest-api/openapi.json` and `GET /rest-api/docs`, open to any client (module docs).
pub fn router() -> Router {
    Router::new().route("/rest-api/openapi.json", get(openapi_json)).route("/rest-api/docs", get(docs_page))
}

/// This document.
#[utoipa::path(get, path = "/rest-api/openapi.json", tag = "description", summary = "This OpenAPI 3.1 document",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)))]
async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}

/// The document rendered as a page.
#[utoipa::path(get, path = "/rest-api/docs", tag = "description", summary = "This document as a page",
    responses((status = 200, description = "A self-contained HTML page that renders /rest-api/openapi.json", content_type = "text/html", body = String)))]
async fn docs_page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Nothing from elsewhere: the page's own inline script and style, and fetches to here.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
        ],
        DOCS_PAGE,
    )
}
