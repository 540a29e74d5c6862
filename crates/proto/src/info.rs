//! `info` strings the client sees (spec/client-protocol.md §6.5, §7.5).

pub const NORMAL_CALL_CLEARING: &str = "Normal call clearing";
pub const STREAM_NOT_FOUND: &str = "Stream not found";
pub const STREAM_NAME_ALREADY_IN_USE: &str = "Stream name is already in use";
pub const STOPPED_BY_SESSION_DISCONNECT: &str = "Stopped by session disconnect";
pub const STOPPED_BY_REST_TERMINATE: &str = "Stopped by rest /terminate";
pub const STOPPED_BY_PUBLISHER_STOP: &str = "Stopped by publisher stop";
/// Connection refused because the client named an application that does not exist.
pub const UNKNOWN_APP_KEY: &str = "Unknown appKey";
/// A message other than `connection` arrived before the session was established.
pub const SESSION_NOT_READY: &str = "Session not ready";
/// Connection closed by the REST API `/connection/terminate`.
pub const TERMINATED_BY_REST: &str = "Terminated by rest /terminate";
/// Connection closed because the client stopped answering pings.
pub const PING_TIMEOUT: &str = "Ping timeout";
