//! The catalogue of REST hook methods and their kinds.
//!
//! The seed (`shared/seeds/000_*.txt`) sorts every hook into one of four kinds; the kind decides
//! what a backend error does (see [`crate::decision`]). The list below is the seed's list plus the
//! 5.x extras named in `spec/rest-hooks.md` §2.
//!
//! **Which name goes into the URL.** Two methods have two spellings in the sources: the seed says
//! `sendDTMF` and `sendBugReport`, while the WebSocket messages of the official SDK and WCS 5.x's
//! own method table say `sendDtmf` and `submitBugReport`. callgate POSTs to the 5.x spelling
//! (`{restUrl}/sendDtmf`, `{restUrl}/submitBugReport`) and accepts both spellings wherever a user
//! names a method: an app's enabled-method list and the keys of `restClientConfig`.
//! Likewise the WCS4 name `ErrorStatusEvent` is accepted for `ErrorEvent`.

use std::fmt;

/// The four kinds of REST methods of the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookKind {
    /// Type 1: `connect`. Decides the behaviour of every later hook via `restClientConfig`.
    Connect,
    /// Type 2: a client action the backend may refuse (or, for some, refuse "pointlessly").
    DirectInvocation,
    /// Type 3: something that already happened; the backend is only notified.
    Event,
    /// Type 4: a request arriving from the SIP side; a refusal is answered to the SIP initiator.
    IncomingInvocation,
}

impl HookKind {
    pub const ALL: [HookKind; 4] =
        [HookKind::Connect, HookKind::DirectInvocation, HookKind::Event, HookKind::IncomingInvocation];
}

macro_rules! methods {
    ($( $variant:ident => $url:literal, $kind:ident $(, aliases = [$($alias:literal),*])? ; )*) => {
        /// Every REST hook method callgate knows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum HookMethod { $( $variant, )* }

        impl HookMethod {
            /// All methods, in catalogue order.
            pub const ALL: &'static [HookMethod] = &[ $( HookMethod::$variant, )* ];

            /// The name put into the hook URL, `{restUrl}/{url_name}` (case-sensitive).
            pub const fn url_name(self) -> &'static str {
                match self { $( HookMethod::$variant => $url, )* }
            }

            /// The kind of the method, as the seed classifies it.
            pub const fn kind(self) -> HookKind {
                match self { $( HookMethod::$variant => HookKind::$kind, )* }
            }

            /// Other spellings accepted for this method in configuration.
            pub const fn aliases(self) -> &'static [&'static str] {
                match self { $( HookMethod::$variant => &[$($($alias),*)?], )* }
            }

            /// Looks a method up by its URL name or one of its aliases (case-sensitive, as WCS).
            pub fn from_name(name: &str) -> Option<HookMethod> {
                match name {
                    $( $url $($(| $alias)*)? => Some(HookMethod::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

methods! {
    // Type 1
    Connect => "connect", Connect;
    // Type 2: the seed's list ...
    Call => "call", DirectInvocation;
    Answer => "answer", DirectInvocation;
    Hold => "hold", DirectInvocation;
    Unhold => "unhold", DirectInvocation;
    Transfer => "transfer", DirectInvocation;
    SendDtmf => "sendDtmf", DirectInvocation, aliases = ["sendDTMF"];
    SendMessage => "sendMessage", DirectInvocation;
    SendImdn => "sendIMDN", DirectInvocation;
    Subscribe => "subscribe", DirectInvocation;
    SendXcapRequest => "sendXcapRequest", DirectInvocation;
    PublishStream => "publishStream", DirectInvocation;
    PlayStream => "playStream", DirectInvocation;
    PlayHls => "playHLS", DirectInvocation;
    PlayRtsp => "playRTSP", DirectInvocation;
    OnDataEvent => "OnDataEvent", DirectInvocation;
    SubmitBugReport => "submitBugReport", DirectInvocation, aliases = ["sendBugReport"];
    // ... refusable but pointless to refuse
    Hangup => "hangup", DirectInvocation;
    UnPublishStream => "unPublishStream", DirectInvocation;
    StopStream => "stopStream", DirectInvocation;
    // ... and the 5.x extras (spec/rest-hooks.md §2)
    PauseStream => "pauseStream", DirectInvocation;
    Snapshot => "snapshot", DirectInvocation;
    PushLogs => "pushLogs", DirectInvocation;
    SessionDebug => "sessionDebug", DirectInvocation;
    // Type 3
    ConnectionStatusEvent => "ConnectionStatusEvent", Event;
    RegistrationStatusEvent => "RegistrationStatusEvent", Event;
    CallStatusEvent => "CallStatusEvent", Event;
    TransferStatusEvent => "TransferStatusEvent", Event;
    MessageStatusEvent => "MessageStatusEvent", Event;
    SubscriptionStatusEvent => "SubscriptionStatusEvent", Event;
    XcapStatusEvent => "XcapStatusEvent", Event;
    StreamStatusEvent => "StreamStatusEvent", Event;
    DataStatusEvent => "DataStatusEvent", Event;
    BugReportStatusEvent => "BugReportStatusEvent", Event;
    StreamKeepAliveEvent => "StreamKeepAliveEvent", Event;
    SendStreamEvent => "sendStreamEvent", Event;
    StreamEvent => "StreamEvent", Event;
    SessionDebugStatusEvent => "SessionDebugStatusEvent", Event;
    // callgate's own: a recording's state (publishStream with record: true; docs/hooks.md §10)
    RecordingStatusEvent => "RecordingStatusEvent", Event;
    ErrorEvent => "ErrorEvent", Event, aliases = ["ErrorStatusEvent"];
    // Type 4
    OnCallEvent => "OnCallEvent", IncomingInvocation;
    OnMessageEvent => "OnMessageEvent", IncomingInvocation;
    OnTransferEvent => "OnTransferEvent", IncomingInvocation;
}

impl HookMethod {
    /// Number of methods; handy for fixed-size per-method tables.
    pub const COUNT: usize = HookMethod::ALL.len();

    /// Dense index of the method in [`HookMethod::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for HookMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_lists_are_classified_as_the_seed_says() {
        // Literal lists from the seed, not derived from the table above.
        let direct = [
            "call",
            "answer",
            "hold",
            "unhold",
            "transfer",
            "sendDTMF",
            "sendMessage",
            "sendIMDN",
            "subscribe",
            "sendXcapRequest",
            "publishStream",
            "playStream",
            "playHLS",
            "playRTSP",
            "OnDataEvent",
            "sendBugReport",
            "hangup",
            "unPublishStream",
            "stopStream",
        ];
        let events = [
            "ConnectionStatusEvent",
            "RegistrationStatusEvent",
            "CallStatusEvent",
            "TransferStatusEvent",
            "MessageStatusEvent",
            "SubscriptionStatusEvent",
            "XcapStatusEvent",
            "StreamStatusEvent",
            "DataStatusEvent",
            "BugReportStatusEvent",
            "StreamKeepAliveEvent",
            "sendStreamEvent",
            "StreamEvent",
        ];
        let incoming = ["OnCallEvent", "OnMessageEvent", "OnTransferEvent"];
        assert_eq!(HookMethod::from_name("connect").unwrap().kind(), HookKind::Connect);
        for n in direct {
            assert_eq!(HookMethod::from_name(n).unwrap().kind(), HookKind::DirectInvocation, "{n}");
        }
        for n in events {
            assert_eq!(HookMethod::from_name(n).unwrap().kind(), HookKind::Event, "{n}");
        }
        for n in incoming {
            assert_eq!(HookMethod::from_name(n).unwrap().kind(), HookKind::IncomingInvocation, "{n}");
        }
    }

    #[test]
    fn aliases_resolve_to_the_5x_url_name() {
        assert_eq!(HookMethod::from_name("sendDTMF"), Some(HookMethod::SendDtmf));
        assert_eq!(HookMethod::from_name("sendDtmf"), Some(HookMethod::SendDtmf));
        assert_eq!(HookMethod::SendDtmf.url_name(), "sendDtmf");
        assert_eq!(HookMethod::from_name("sendBugReport"), Some(HookMethod::SubmitBugReport));
        assert_eq!(HookMethod::SubmitBugReport.url_name(), "submitBugReport");
        assert_eq!(HookMethod::from_name("ErrorStatusEvent"), Some(HookMethod::ErrorEvent));
        assert_eq!(HookMethod::from_name("senddtmf"), None, "names are case-sensitive");
    }

    #[test]
    fn every_name_round_trips_and_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for (i, m) in HookMethod::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
            assert_eq!(HookMethod::from_name(m.url_name()), Some(*m));
            assert!(seen.insert(m.url_name()));
            for a in m.aliases() {
                assert!(seen.insert(a));
            }
        }
    }
}
