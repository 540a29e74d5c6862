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
    // Checked to be one JSON object without building it (the answer is the received bytes). The
    // skipping parser does not check string contents, so UTF-8 is checked on its own (JSON text
    // is UTF-8, RFC 8259 §8.1).
    let is_object = std::str::from_utf8(&body).is_ok()
        && !body.iter().all(u8::is_ascii_whitespace)
        && callgate_hooks::dispatch::parse_answer_for(&body, callgate_hooks::dispatch::AnswerUse::Validate).is_ok();
    if is_object {
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    } else {
        (StatusCode::BAD_REQUEST, "body must be a JSON object").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn status(body: &'static [u8]) -> StatusCode {
        echo(Path("connect".to_string()), Bytes::from_static(body)).await.status()
    }

    #[tokio::test]
    async fn only_json_objects_in_utf8_are_echoed() {
        assert_eq!(status(br#"{"a":"\u00ff","b":[1,{"c":null}]}"#).await, StatusCode::OK);
        assert_eq!(status("{\"a\":\"ÿ\"}".as_bytes()).await, StatusCode::OK);
        // Invalid UTF-8 inside a string value (the skipping parser alone would let it through).
        assert_eq!(status(b"{\"a\":\"\xff\"}").await, StatusCode::BAD_REQUEST);
        assert_eq!(status(b"{\"\xff\":1}").await, StatusCode::BAD_REQUEST);
        for bad in [&b""[..], b" ", b"[1]", b"null", b"{\"a\":", b"{} x"] {
            assert_eq!(status(bad).await, StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }
}
