//! The REST API's OpenAPI 3.1 document (`GET /rest-api/openapi.json`) against the real server:
//! it parses as OpenAPI 3.1, its schemas are valid JSON Schemas, it names exactly the routes the
//! router serves (read from the server's source, so a new route without docs fails here), each
//! of those routes answers on a running server, and real answers match the documented schemas.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use callgate_tests::{start_server, Client, WAIT};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 request; (status, lower-case headers, body).
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    auth: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let auth_line = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth_line}Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut buf)).await.expect("HTTP answer in time").unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Every `.route("/rest-api/…", …)` in the server's source, as (path, method) pairs. Read from
/// the source because axum's `Router` cannot list its routes.
fn routes_in_source() -> BTreeSet<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/server/src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut routes = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find(".route(\"") {
            rest = &rest[i + ".route(\"".len()..];
            let end = rest.find('"').unwrap();
            let path = &rest[..end];
            // The method router: up to the parenthesis that closes `.route(`.
            let mut depth = 1;
            let mut close = end + 1;
            for (j, c) in rest[end + 1..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    close = end + 1 + j;
                    break;
                }
            }
            let call = &rest[end + 1..close];
            if !path.starts_with("/rest-api") {
                continue;
            }
            let mut found = false;
            for m in ["get", "post", "put", "delete", "patch", "head", "options", "any"] {
                let called = call.match_indices(&format!("{m}(")).any(|(k, _)| {
                    k == 0 || !call.as_bytes()[k - 1].is_ascii_alphanumeric() && call.as_bytes()[k - 1] != b'_'
                });
                if called {
                    routes.insert((path.to_string(), m.to_string()));
                    found = true;
                }
            }
            assert!(found, "{}: no method found for route {path}: {call}", f.display());
        }
    }
    routes
}

fn routes_in_document(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in ["get", "post", "put", "delete", "patch", "head", "options"] {
            if item.get(m).is_some() {
                out.insert((path.clone(), m.to_string()));
            }
        }
    }
    out
}

/// The JSON Schema of `path`'s `method` answer `status` (`application/json`), its `$ref`s
/// resolvable against the document's components.
fn answer_schema(doc: &Value, path: &str, method: &str, status: &str) -> Value {
    let schema = doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"].clone();
    assert!(!schema.is_null(), "{method} {path} documents no JSON answer {status}");
    let mut s = schema.as_object().unwrap().clone();
    s.insert("components".into(), doc["components"].clone());
    Value::Object(s)
}

async fn document(addr: SocketAddr) -> Value {
    let (status, headers, body) = request(addr, "GET", "/rest-api/openapi.json", "", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    serde_json::from_str(&body).expect("the document is JSON")
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_matches_the_router() {
    let server = start_server("").await;
    let doc = document(server.http_addr).await;

    // OpenAPI 3.1, as a typed parser reads it; every $ref of every operation resolves.
    let spec = oas3::from_json(doc.to_string()).expect("the document parses as OpenAPI");
    let version = spec.validate_version().expect("a supported OpenAPI version");
    assert_eq!((version.major, version.minor), (3, 1), "{version}");
    let mut ids = BTreeSet::new();
    for (path, method, op) in spec.operations() {
        let id = op.operation_id.clone().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(ids.insert(id.clone()), "operationId {id} is used twice");
        op.request_body(&spec).unwrap_or_else(|e| panic!("{method} {path}: request body: {e}"));
        assert!(!op.responses(&spec).is_empty(), "{method} {path} documents no answer");
        assert!(op.responses(&spec).contains_key("200"), "{method} {path} documents no 200");
    }
    // Every schema is a valid JSON Schema (2020-12, OpenAPI 3.1's dialect).
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert!(schemas.len() >= 10, "{schemas:?}");
    for (name, s) in schemas {
        jsonschema::meta::validate(s).unwrap_or_else(|e| panic!("schema {name} is not a valid JSON Schema: {e}"));
    }

    // The router's routes and the document's, both ways.
    let source = routes_in_source();
    let documented = routes_in_document(&doc);
    assert!(source.len() >= 17, "the route scan found too few routes: {source:?}");
    let undocumented: Vec<_> = source.difference(&documented).collect();
    assert!(undocumented.is_empty(), "routes the router serves but the document lacks: {undocumented:?}");
    let unserved: Vec<_> = documented.difference(&source).collect();
    assert!(unserved.is_empty(), "routes the document names but the router does not serve: {unserved:?}");

    // And each one is served by the running server: its documented method is routed (never
    // 405, never the router's empty 404), another method is not (405).
    for (path, method) in &documented {
        let body = if method == "post" { "{}" } else { "" };
        let (status, _, text) = request(server.http_addr, &method.to_uppercase(), path, body, None).await;
        assert_ne!(status, 405, "{method} {path}");
        assert!(!(status == 404 && text.is_empty()), "{method} {path} is not routed");
        let documented_statuses: BTreeSet<&String> =
            doc["paths"][path][method]["responses"].as_object().unwrap().keys().collect();
        assert!(
            documented_statuses.contains(&status.to_string()),
            "{method} {path} answered {status}, not among the documented {documented_statuses:?}: {text}"
        );
        // The documented body and the handler agree on what `{}` lacks.
        let body_schema = &doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"];
        if method == "post" && body_schema.is_object() {
            let mut s = body_schema.as_object().unwrap().clone();
            s.insert("components".into(), doc["components"].clone());
            let accepted = jsonschema::is_valid(&Value::Object(s), &json!({}));
            assert_eq!(accepted, status != 400, "POST {path} {{}}: schema says {accepted}, the server {status} {text}");
        }
        let (status, _, _) = request(server.http_addr, "PUT", path, "{}", None).await;
        assert_eq!(status, 405, "PUT {path}: the path should be routed for other methods only");
    }
    let (status, _, _) = request(server.http_addr, "POST", "/rest-api/connection/nothing", "{}", None).await;
    assert_eq!(status, 404, "an unknown path is not routed");
}

#[tokio::test]
async fn real_answers_match_the_documented_schemas() {
    let server = start_server("").await;
    let doc = document(server.http_addr).await;
    let (_client, _) = Client::establish(
        &server,
        json!({"appKey": "defaultApp", "sipLogin": "1001", "sipPassword": "secret", "custom": {"k": 1}}),
    )
    .await;

    for path in ["/rest-api/connection/find_all", "/rest-api/connection/find"] {
        let body = if path.ends_with("find") { r#"{"appKey":"defaultApp"}"# } else { "" };
        let (status, headers, text) = request(server.http_addr, "POST", path, body, None).await;
        assert_eq!(status, 200, "{path}: {text}");
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer.as_array().map(Vec::len), Some(1), "{answer}");
        let schema = answer_schema(&doc, path, "post", "200");
        let v = jsonschema::validator_for(&schema).expect("the answer schema compiles");
        let errors: Vec<String> = v.iter_errors(&answer).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{path}: {answer} does not match its schema: {errors:?}");
    }
    // The schema is not empty: an answer without the context fields would not match it.
    let schema = answer_schema(&doc, "/rest-api/connection/find_all", "get", "200");
    assert!(!jsonschema::is_valid(&schema, &json!([{"appKey": "defaultApp"}])));
    assert!(!jsonschema::is_valid(&schema, &json!({"nodeId": "n", "sessionId": "s", "appKey": "a"})));

    // Errors are text, with the documented status.
    for (path, body, want) in [
        ("/rest-api/stream/find_all", "", 404),
        ("/rest-api/call/startup", "{}", 400),
        ("/rest-api/connection/terminate", r#"{"sessionId":"nobody"}"#, 404),
        ("/rest-api/connection/find", "[1]", 400),
    ] {
        let (status, headers, text) = request(server.http_addr, "POST", path, body, None).await;
        assert_eq!(status, want, "{path}: {text}");
        assert!(header(&headers, "content-type").unwrap().starts_with("text/plain"), "{path}");
        assert!(!text.is_empty(), "{path}: a reason");
        let documented = &doc["paths"][path]["post"]["responses"][want.to_string()]["content"]["text/plain"];
        assert!(documented.is_object(), "{path}: {want} is not documented as text");
    }
}

#[tokio::test]
async fn the_description_needs_no_credentials_and_the_page_loads_nothing_from_elsewhere() {
    let server = start_server("[rest_api]\nusername = \"admin\"\npassword = \"long-secret\"\n").await;
    let (status, _, _) = request(server.http_addr, "GET", "/rest-api/connection/find_all", "", None).await;
    assert_eq!(status, 401, "the API itself needs credentials");
    let doc = document(server.http_addr).await;
    assert!(doc["components"]["securitySchemes"]["basicAuth"].is_object());
    assert_eq!(doc["paths"]["/rest-api/openapi.json"]["get"]["security"], json!([]));
    assert!(doc["paths"]["/rest-api/call/startup"]["post"]["responses"]["401"].is_object());

    let (status, headers, page) = request(server.http_addr, "GET", "/rest-api/docs", "", None).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("text/html; charset=utf-8"));
    let csp = header(&headers, "content-security-policy").expect("a CSP");
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"), "{csp}");
    assert!(page.contains("fetch(\"openapi.json\")"), "the page renders the document next to it");
    for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//", "@import", "url("] {
        assert!(!page.contains(external), "the page loads {external}… from elsewhere");
    }
}
