//! What the gateway watches in an answer while relaying it: the text, for
//! response moderation (what the client would get, after any reshaping of
//! events), and — when the request is over — its usage, for token limits.
//! `relay` feeds it; it knows nothing of sockets. The usage itself is read
//! by `observe` into the request's `Record`.

use crate::error::Error;
use crate::limit::Charge;
use crate::moderation::{self, ResponseCheck};
use crate::observe::Usage;

#[derive(Default)]
pub struct Watch {
    charge: Charge,
    check: Option<ResponseCheck>,
    blocked: bool,
}

impl Watch {
    pub fn new(charge: Charge, check: Option<ResponseCheck>) -> Self {
        Watch {
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

    /// Whole SSE events as the client would get them: whether they may be
    /// sent. After a refusal the stream must end with
    /// [`Watch::blocked_error`], and nothing more is allowed.
    pub fn allows_event(&mut self, events: &[u8]) -> bool {
        if let (false, Some(c)) = (self.blocked, &mut self.check) {
            self.blocked = !c.event(events);
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

    /// The request is over: its tokens (as the upstream reported them)
    /// count against its token limits from now on.
    pub fn finish(&mut self, usage: &Usage) {
        let charge = std::mem::take(&mut self.charge);
        if charge.wants_tokens() {
            let n = usage
                .input
                .unwrap_or(0)
                .saturating_add(usage.output.unwrap_or(0));
            charge.tokens(n);
        }
    }
}
