//! The built-in EchoApp: `POST /apps/EchoApp/{method}` answers `200` with the body it received,
//! which is what a backend that allows everything and changes nothing does (WCS `EchoApp`).

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/apps/EchoApp/{method}", post(echo))
}

async fn echo(Path(method): Path<String>, body: Bytes) -> Response {
    if callgate_hooks::HookMethod::from_name(&method).is_none() {
        return (StatusCode::NOT_FOUND, format!("unknown hook method {method}")).into_response();
    }
    // Checked to be one JSON object without building it (the answer is the received bytes).
    let is_object = !body.iter().all(u8::is_ascii_whitespace)
        && callgate_hooks::dispatch::parse_answer_for(&body, callgate_hooks::dispatch::AnswerUse::Validate).is_ok();
    if is_object {
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    } else {
        (StatusCode::BAD_REQUEST, "body must be a JSON object").into_response()
    }
}
