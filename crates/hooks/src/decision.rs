//! The decision: what happens after a hook, as a pure function of
//! (kind, origin, `restOnError`, `restPolicy`, result).
//!
//! This is the seed's table ("Действия в случае ошибки взаимодействия с бэкенд сервером"):
//!
//! | restOnError | connect | direct invocations | events | incoming invocations |
//! |---|---|---|---|---|
//! | FAIL | log; abort; error to the client | log; abort; error to the client in the operation's event | log; **continue**; `ErrorEvent` to the client | log; abort; `403 FORBIDDEN` to the initiator; error to the client |
//! | LOG  | (empty cell, see below) | log; continue | log; continue | log; continue |
//!
//! Decisions callgate makes where the seed is silent (documented in `docs/hooks.md`):
//! - **connect under LOG** declines the connection too. The seed's LOG cell for connect is empty,
//!   the connect page says a failed connect always declines, and the older table declines under
//!   both values. Accepting a session whose authorisation hook failed would also turn a backend
//!   outage into an open door.
//! - **REST-API origin**: "a call of any type initiated through the REST API must not be rejected
//!   by the backend". Connect, direct and incoming invocations started by the REST API proceed
//!   (the error is logged). Events are never rejected anyway, so their row is unchanged (FAIL still
//!   reports an `ErrorEvent`, which rejects nothing).
//! - An interaction error never applies the backend's data: the operation continues with the
//!   data it had.

use crate::catalogue::HookKind;
use crate::client_config::{RestOnError, RestPolicy};

/// Who started the action the hook is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The WebSocket client (the official SDK).
    Client,
    /// A backend calling callgate's REST API (`/rest-api/...`): cannot be rejected.
    RestApi,
    /// The SIP side (incoming INVITE, MESSAGE, REFER; SIP responses that raise events).
    Sip,
}

impl Origin {
    pub const ALL: [Origin; 3] = [Origin::Client, Origin::RestApi, Origin::Sip];
}

/// What came of the hook request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookResult {
    /// `200 OK` with a JSON object (or an empty body).
    Answered,
    /// The backend was not called (policy `DISABLE`, method not enabled for the app, hooks off).
    NotCalled,
    /// Interaction error: a status other than 200, unreachable, timeout, bad or oversized body.
    InteractionError,
}

impl HookResult {
    pub const ALL: [HookResult; 3] = [HookResult::Answered, HookResult::NotCalled, HookResult::InteractionError];
}

/// How the backend's answer changes the operation's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataEffect {
    /// The data stays as it is.
    Unchanged,
    /// Copy the `restOverwrite` fields from the answer (`restPolicy=OVERWRITE`).
    OverwriteListed,
    /// `connect`: every answered field overrides the connection's, except `nodeId`, `sessionId`,
    /// `appKey` (this is how a backend injects SIP credentials, spec/rest-hooks.md §3).
    MergeConnect,
}

/// The verdict of the decision table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Go on with the operation.
    Proceed(DataEffect),
    /// Log the interaction error and go on with unchanged data.
    LogAndProceed,
    /// Log, go on, and send the client an `ErrorEvent` (events under FAIL).
    ProceedWithErrorEvent,
    /// Log, abort, and report the error to the client in the operation's own event
    /// (connect: `fail` with `apiMethod:"ConnectionStatusEvent"`, then close).
    Reject,
    /// Log, abort, answer the initiator `403 FORBIDDEN`, and report the error to the client in
    /// the corresponding event (incoming invocations under FAIL).
    RejectInitiator,
}

impl Verdict {
    /// True when the operation must not go on.
    pub fn aborts(self) -> bool {
        matches!(self, Verdict::Reject | Verdict::RejectInitiator)
    }

    /// True when the verdict stems from an interaction error that has to be logged.
    pub fn logs_error(self) -> bool {
        !matches!(self, Verdict::Proceed(_))
    }
}

/// The seed's decision table, extended by the choices in the module docs.
pub fn decide(
    kind: HookKind,
    origin: Origin,
    on_error: RestOnError,
    policy: RestPolicy,
    result: HookResult,
) -> Verdict {
    match result {
        HookResult::NotCalled => Verdict::Proceed(DataEffect::Unchanged),
        HookResult::Answered => Verdict::Proceed(match kind {
            // restClientConfig arrives in the connect answer itself, so connect has no policy.
            HookKind::Connect => DataEffect::MergeConnect,
            _ => match policy {
                RestPolicy::Overwrite => DataEffect::OverwriteListed,
                // DISABLE with an answer only happens if a caller called anyway: change nothing.
                RestPolicy::Notify | RestPolicy::Disable => DataEffect::Unchanged,
            },
        }),
        HookResult::InteractionError => {
            if kind == HookKind::Event {
                return match on_error {
                    RestOnError::Fail => Verdict::ProceedWithErrorEvent,
                    RestOnError::Log => Verdict::LogAndProceed,
                };
            }
            if origin == Origin::RestApi {
                return Verdict::LogAndProceed;
            }
            match (kind, on_error) {
                (HookKind::Connect, _) => Verdict::Reject,
                (HookKind::DirectInvocation, RestOnError::Fail) => Verdict::Reject,
                (HookKind::IncomingInvocation, RestOnError::Fail) => Verdict::RejectInitiator,
                (_, RestOnError::Log) => Verdict::LogAndProceed,
                (HookKind::Event, RestOnError::Fail) => unreachable!("events are handled above"),
            }
        }
    }
}
