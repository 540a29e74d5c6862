//! callgate-hooks: the REST hook engine.
//!
//! A WCS-compatible server asks the customer's backend before (direct and incoming invocations)
//! or after (events) everything it does, by `POST {restUrl}/{method}` with a JSON body. This crate
//! owns the whole contract:
//!
//! - [`catalogue`]: every method and its kind (connect, direct invocation, event, incoming invocation);
//! - [`client_config`]: `restClientConfig` from the connect answer;
//! - [`decision`]: the seed's error table as a pure function;
//! - [`rules`]: `restExclude`, `clientExclude`, `restOverwrite`, connect merge, custom reasons;
//! - [`app`]: applications (`appKey` -> URL, credentials, enabled methods);
//! - [`dispatch`]: the HTTP client (pooled keep-alive, timeout, retries, in-flight bound, body limit, signing,
//!   failover URLs);
//! - [`breaker`]: a circuit breaker per backend `host:port` with half-open probing;
//! - [`schema`]: JSON Schemas of every hook body and answer, and an example body per method;
//! - [`webhooks`]: Standard Webhooks signing (`webhook-id`, `webhook-timestamp`, `webhook-signature`);
//! - [`engine`]: one hook end to end, and the per-session ordered [`engine::EventQueue`];
//! - [`feed`]: the live hook log, one [`feed::HookRecord`] per hook while someone listens;
//! - [`delivery`]: events at least once (retry schedule with jitter, `sequence`, `eventId`);
//! - [`dead_letter`]: the dead-letter file of events given up, and its replay.
//!
//! Driving it:
//!
//! ```no_run
//! # async fn demo(engine: callgate_hooks::HookEngine, app: std::sync::Arc<callgate_hooks::App>) {
//! use callgate_hooks::{HookMethod, Origin, RestClientConfig, Verdict};
//! let mut data = serde_json::json!({"callee": "Alice"}).as_object().unwrap().clone();
//! let inv = engine.invoke(&app, &RestClientConfig::default(), HookMethod::Call, Origin::Client, &mut data, "session-1").await;
//! if inv.verdict.aborts() { /* report inv.client_info() to the client */ }
//! # }
//! ```
//!
//! Only [`dispatch`] and [`engine`] do I/O; everything else is pure and benchable in ns.

pub mod app;
pub mod breaker;
pub mod catalogue;
pub mod client_config;
pub mod dead_letter;
pub mod decision;
pub mod delivery;
pub mod dispatch;
pub mod engine;
pub mod feed;
pub mod rules;
pub mod schema;
pub mod webhooks;

pub use app::{App, AppConfig, AppConfigError, AppRegistry, MethodSelection, OnUnreachable, ECHO_APP};
pub use breaker::BreakerConfig;
pub use catalogue::{HookKind, HookMethod};
pub use client_config::{ConfigWarning, FieldList, MethodConfig, RestClientConfig, RestOnError, RestPolicy};
pub use dead_letter::{DeadEvent, DeadLetter, ReplayReport};
pub use decision::{decide, DataEffect, HookResult, Origin, Verdict};
pub use delivery::DeliveryConfig;
pub use dispatch::{Dispatcher, DispatcherConfig, InteractionError};
pub use engine::{EventDone, EventJob, EventQueue, HookEngine, Invocation};
pub use feed::{FeedListener, HookFeed, HookRecord};
pub use webhooks::WebhookKeys;
