//! The real ports of a [`super::task::CallTask`]: the session (or a REST call's party), the
//! SIP side, the media endpoint.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use callgate_errmap::FailureEvent;
use callgate_hooks::{HookMethod, Origin};
use callgate_media::bridge::G711;

/// The codec of a REST call's RTP-only leg (its offer has only it and telephone-event); the
/// media source of its `toStream` carries the same.
pub(super) const RTP_LEG_CODEC: G711 = G711::Pcmu;
use callgate_media::core::BridgeAnswer;
use callgate_media::{MediaEndpoint, MediaError, MediaEvent, PeerId};
use callgate_proto::ServerFrame;
use callgate_sip::ua::{CallEvent, CallId as SipCallId, ReqId};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::task::{CallMedia, CallParty, CallSip};
use super::SipPolicy;
use crate::party::Party;
use crate::party::SipCredentials;
use crate::sip_side::SipSide;

impl CallParty for Arc<Party> {
    fn id(&self) -> &str {
        &self.id
    }

    fn with_context(&self, obj: Map<String, Value>) -> Map<String, Value> {
        Party::with_context(self, obj)
    }

    fn raise(
        &self,
        method: HookMethod,
        origin: Origin,
        data: Map<String, Value>,
        client_message: Option<&'static str>,
    ) {
        self.raise_event(method, origin, data, client_message);
    }

    fn send(&self, frame: &ServerFrame) {
        Party::send(self, frame);
    }

    fn send_object(&self, message: &'static str, obj: &Map<String, Value>, method: HookMethod) {
        Party::send_object(self, message, obj, &self.rcc.method(method).client_exclude);
    }

    fn sip_error_event(&self, f: &FailureEvent, origin: Origin) {
        Party::sip_error_event(self, f, origin);
    }

    fn direct<'a>(
        &'a self,
        method: HookMethod,
        origin: Origin,
        data: &'a mut Map<String, Value>,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'a {
        self.direct_from(method, origin, data)
    }
}

/// The SIP side as a call sees it: the node's SIP side, where calls may go, and how long an
/// account's registrations last.
#[derive(Clone)]
pub(crate) struct SipPort {
    pub side: SipSide,
    pub policy: Arc<SipPolicy>,
    pub expires: u32,
    /// The embedded registrar (`[registrar]`), when enabled.
    pub registrar: Option<Arc<super::registrar::Embedded>>,
}

/// Where an outgoing call goes: the account it is placed from and the destinations the
/// session's backend allowed beyond `[sip] allowed_destinations`.
pub(crate) struct Dial {
    pub creds: SipCredentials,
    pub session_destinations: Vec<super::policy::Destination>,
    pub session: Arc<str>,
}

/// The account's next hop: the embedded registrar for an account of its domain (it is part
/// of this node), else resolved, when `[sip] allowed_destinations` or the session's
/// backend-given `sipAllowedDestinations` (`session_destinations`) allow it; else
/// [`super::policy::NOT_ALLOWED`] and nothing is sent (issue 14 item 8).
pub(crate) async fn next_hop(
    policy: &SipPolicy,
    registrar: Option<&super::registrar::Embedded>,
    session: &str,
    creds: &SipCredentials,
    session_destinations: &[super::policy::Destination],
) -> Result<SocketAddr, String> {
    if let Some(r) = registrar.filter(|r| r.serves(creds)) {
        return r.addr();
    }
    let addr = creds.resolve().await?;
    if policy.destination_allowed(session_destinations, creds.next_hop_name(), addr) {
        return Ok(addr);
    }
    let target = creds.next_hop_target();
    tracing::info!(session, target, %addr, "SIP destination not allowed ([sip] allowed_destinations)");
    metrics::counter!("callgate_sip_destinations_refused_total").increment(1);
    Err(format!("{}: {target}", super::policy::NOT_ALLOWED))
}

impl CallSip for SipPort {
    type Dial = Dial;

    async fn invite(
        &self,
        dial: &Dial,
        callee: &str,
        offer: Bytes,
    ) -> Result<(SipCallId, mpsc::UnboundedReceiver<CallEvent>), String> {
        let next_hop =
            next_hop(&self.policy, self.registrar.as_deref(), &dial.session, &dial.creds, &dial.session_destinations)
                .await?;
        let account = dial.creds.account(next_hop, self.expires);
        let to = super::call::target_uri(callee, &dial.creds.domain);
        tracing::info!(session = &*dial.session, to, %next_hop, "SIP INVITE");
        self.side
            .invite(account, to, offer)
            .await
            .map_err(|e| format!("{}: {e}", callgate_proto::info::FAILED_BY_ERROR))
    }

    fn domain(dial: &Dial) -> String {
        dial.creds.domain.clone()
    }

    fn unroute(&self, call: SipCallId) {
        self.side.unroute(call);
    }

    async fn hangup(&self, call: SipCallId) -> Result<(), String> {
        self.side.hangup(call).await
    }

    async fn reinvite(&self, call: SipCallId, hold: bool, sdp: Bytes) -> Result<(), String> {
        if hold {
            self.side.reinvite_hold(call, sdp).await
        } else {
            self.side.reinvite_unhold(call, sdp).await
        }
    }

    async fn info_dtmf(&self, call: SipCallId, digit: char) -> Result<(), String> {
        self.side.info_dtmf(call, digit).await
    }

    async fn refer(&self, call: SipCallId, target: String) -> Result<(), String> {
        self.side.refer(call, target).await
    }

    async fn answer(&self, call: SipCallId, sdp: Bytes) -> Result<(), String> {
        self.side.answer(call, sdp).await
    }

    async fn reject(&self, call: SipCallId, status: u16, reason: &'static str) -> Result<(), String> {
        self.side.reject(call, status, reason).await
    }

    async fn respond(&self, req: ReqId, status: u16, reason: &'static str) -> Result<(), String> {
        self.side.respond(req, status, reason).await
    }

    async fn notify_transfer(&self, call: SipCallId, status: u16, reason: &'static str) -> Result<(), String> {
        self.side.notify_transfer(call, status, reason).await
    }
}

impl CallMedia for MediaEndpoint {
    async fn bridge(
        &self,
        peer: PeerId,
        offer: String,
        events: mpsc::UnboundedSender<MediaEvent>,
    ) -> Result<BridgeAnswer, MediaError> {
        MediaEndpoint::bridge(self, peer, offer, events).await
    }

    async fn rtp_leg(&self, peer: PeerId) -> Result<String, MediaError> {
        MediaEndpoint::rtp_leg(self, peer, RTP_LEG_CODEC).await
    }

    async fn remote(&self, peer: PeerId, sdp: String) -> Result<(), MediaError> {
        self.bridge_remote(peer, sdp).await
    }

    async fn browser_answer(&self, peer: PeerId, sdp: String) -> Result<(), MediaError> {
        self.bridge_answer(peer, sdp).await
    }

    async fn dtmf(&self, peer: PeerId, keys: String) -> Result<(), MediaError> {
        self.send_dtmf(peer, keys).await
    }

    fn close(&self, peer: PeerId) {
        MediaEndpoint::close(self, peer);
    }
}
