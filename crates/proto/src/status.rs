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

/// `StreamStatusEvent.status` (spec/client-protocol.md §7).
pub mod stream {
    pub const PENDING: &str = "PENDING";
    pub const PUBLISHING: &str = "PUBLISHING";
    pub const PLAYING: &str = "PLAYING";
    pub const UNPUBLISHED: &str = "UNPUBLISHED";
    pub const STOPPED: &str = "STOPPED";
    pub const FAILED: &str = "FAILED";
}

/// `CallStatusEvent.status` (the SDK's `CALL_STATUS`, spec/client-protocol.md §6.1, §6.5).
pub mod call {
    /// An incoming call offered to the client (and a REST-started call before its INVITE).
    pub const PENDING: &str = "PENDING";
    pub const TRYING: &str = "TRYING";
    pub const RING: &str = "RING";
    pub const RING_MEDIA: &str = "RING_MEDIA";
    pub const SESSION_PROGRESS: &str = "SESSION_PROGRESS";
    pub const ESTABLISHED: &str = "ESTABLISHED";
    pub const HOLD: &str = "HOLD";
    pub const FINISH: &str = "FINISH";
    pub const FAILED: &str = "FAILED";
}

/// `TransferStatusEvent.status` / `notifyTransferEvent` (spec/client-protocol.md §6.4).
pub mod transfer {
    /// An incoming REFER offered to the client (`OnTransferEvent`).
    pub const PENDING: &str = "PENDING";
    /// Our REFER got a 2xx.
    pub const ACCEPTED: &str = "ACCEPTED";
    /// A NOTIFY with a 1xx sipfrag.
    pub const TRYING: &str = "TRYING";
    /// A NOTIFY with a 2xx sipfrag.
    pub const COMPLETED: &str = "COMPLETED";
    pub const FAILED: &str = "FAILED";
}

/// `RegistrationStatusEvent.status`.
pub mod registration {
    pub const REGISTERED: &str = "REGISTERED";
    pub const UNREGISTERED: &str = "UNREGISTERED";
    pub const FAILED: &str = "FAILED";
}

/// `MessageStatusEvent.status` (SIP MESSAGE and IMDN).
pub mod message {
    pub const SENT: &str = "SENT";
    pub const ACCEPTED: &str = "ACCEPTED";
    pub const FAILED: &str = "FAILED";
    pub const RECEIVED: &str = "RECEIVED";
    pub const IMDN_NOTIFICATION_SENT: &str = "IMDN_NOTIFICATION_SENT";
}

/// `SubscriptionStatusEvent.status` (SIP SUBSCRIBE/NOTIFY).
pub mod subscription {
    pub const ACCEPTED: &str = "ACCEPTED";
    pub const NOTIFY: &str = "NOTIFY";
    pub const TERMINATED: &str = "TERMINATED";
    pub const FAILED: &str = "FAILED";
}

/// `XcapStatusEvent.status`.
pub mod xcap {
    pub const ACCEPTED: &str = "ACCEPTED";
    pub const FAILED: &str = "FAILED";
}
