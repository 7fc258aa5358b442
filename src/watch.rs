//! What the gateway watches in an answer while relaying it: the usage,
//! for token limits (charged when the request ends, however it ends), and
//! the text, for response moderation. `relay` feeds it; it knows nothing
//! of sockets. Usage is read from what the upstream sent; moderation sees
//! what the client would get (after any reshaping of events).

use crate::error::Error;
use crate::limit::Charge;
use crate::moderation::{self, ResponseCheck};
use crate::usage::UsageScan;

#[derive(Default)]
pub struct Watch {
    charge: Charge,
    usage: Option<UsageScan>,
    check: Option<ResponseCheck>,
    blocked: bool,
}

impl Watch {
    pub fn new(charge: Charge, check: Option<ResponseCheck>) -> Self {
        Watch {
            usage: charge.wants_tokens().then(UsageScan::default),
            charge,
            check,
            blocked: false,
        }
    }

    /// Whether a non-streamed answer must be held whole and checked before
    /// any of it is sent (`content_type` is the answer's).
    pub fn holds_whole(&self, content_type: Option<&[u8]>) -> bool {
        self.check.is_some()
            && content_type
                .is_some_and(|t| t.len() >= 16 && t[..16].eq_ignore_ascii_case(b"application/json"))
    }

    /// One whole upstream SSE event, before any reshaping (its usage).
    pub fn usage_event(&mut self, event: &[u8]) {
        if let Some(u) = &mut self.usage {
            u.whole(event);
        }
    }

    /// A piece of a body relayed as it comes (its usage).
    pub fn usage_piece(&mut self, bytes: &[u8]) {
        if let Some(u) = &mut self.usage {
            u.piece(bytes);
        }
    }

    /// A whole upstream answer (its usage).
    pub fn usage_whole(&mut self, body: &[u8]) {
        if let Some(u) = &mut self.usage {
            u.whole(body);
        }
    }

    /// One whole SSE event as the client would get it: whether it may be
    /// sent. After a refusal the stream must end with
    /// [`Watch::blocked_error`], and nothing more is allowed.
    pub fn allows_event(&mut self, event: &[u8]) -> bool {
        if let (false, Some(c)) = (self.blocked, &mut self.check) {
            self.blocked = !c.event(event);
        }
        !self.blocked
    }

    /// A whole answer as the client would get it, held before sending:
    /// whether it may be sent.
    pub fn allows_whole(&mut self, body: &[u8]) -> bool {
        if let (false, Some(c)) = (self.blocked, &mut self.check) {
            self.blocked = !c.whole(body);
        }
        !self.blocked
    }

    pub fn blocked_error(&self) -> Error {
        moderation::answer_blocked()
    }
}

impl Drop for Watch {
    /// The request is over: its tokens count from now on.
    fn drop(&mut self) {
        if let Some(u) = &self.usage {
            self.charge.tokens(u.total());
        }
    }
}
