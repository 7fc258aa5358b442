//! What the gateway watches in an answer while relaying it: the usage,
//! for token limits (charged when the request ends, however it ends), and
//! the text, for response moderation. `relay` feeds it; it knows nothing
//! of sockets.

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

    /// One whole SSE event: whether it may be sent. After a refusal the
    /// stream must end with [`Watch::blocked_error`].
    pub fn event(&mut self, event: &[u8]) -> bool {
        if self.blocked {
            return false;
        }
        if let Some(u) = &mut self.usage {
            u.whole(event);
        }
        if let Some(c) = &mut self.check {
            self.blocked = !c.event(event);
        }
        !self.blocked
    }

    /// A piece of a body relayed as it comes (not checked).
    pub fn piece(&mut self, bytes: &[u8]) {
        if let Some(u) = &mut self.usage {
            u.piece(bytes);
        }
    }

    /// A whole answer held before sending: whether it may be sent.
    pub fn whole(&mut self, body: &[u8]) -> bool {
        if let Some(u) = &mut self.usage {
            u.whole(body);
        }
        if let Some(c) = &mut self.check {
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
