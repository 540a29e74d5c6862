//! Status values as the protocol spells them (spec/rest-hooks.md §9).

/// `ConnectionStatusEvent.status`.
pub mod connection {
    pub const ESTABLISHED: &str = "ESTABLISHED";
    pub const DISCONNECTED: &str = "DISCONNECTED";
    pub const FAILED: &str = "FAILED";
}

/// `DataStatusEvent.status`: the SDK accepts only these two (anything else throws in its handler).
pub mod data {
    pub const ACCEPTED: &str = "ACCEPTED";
    pub const FAILED: &str = "FAILED";
}

/// `BugReportStatusEvent.status` (not read by the SDK; callgate mirrors `DataStatusEvent`).
pub mod bug_report {
    pub const ACCEPTED: &str = "ACCEPTED";
    pub const FAILED: &str = "FAILED";
}

/// `notifySessionDebugEvent.status` / `SessionDebugStatusEvent.status`.
pub mod session_debug {
    pub const STARTED: &str = "STARTED";
    pub const STOPPED: &str = "STOPPED";
    pub const FAILED: &str = "FAILED";
}
