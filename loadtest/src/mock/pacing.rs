//! Token pacing: when each part of a response is due, measured from the
//! start of the response.
//!
//! Two timings combine, the later one wins:
//! - token pacing (`--ttft-ms` / `--itl-ms`, per request `x-mock-ttft-ms` /
//!   `x-mock-itl-ms`): the first output token is due at TTFT, each next one
//!   an ITL later; preamble events (Anthropic's `message_start`) go at once,
//!   trailing events (finish, usage, `[DONE]`) right after the last token.
//!   A whole (non-streamed) generation is due when its last token would be.
//! - raw timing faults (`x-mock-first-byte-ms`; `x-mock-chunk-delay-ms`,
//!   or `--chunk-delay-ms` for every request): event `i` of any stream is
//!   due at `first_byte + i * chunk_delay`.

use std::time::Duration;

use super::api::Tokens;

/// The timings that apply to one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pacing {
    pub ttft_ms: u64,
    pub itl_ms: u64,
    pub first_byte_ms: u64,
    pub chunk_delay_ms: u64,
}

impl Pacing {
    /// When stream event `i` is due.
    pub fn event_due(&self, tokens: Option<Tokens>, i: usize) -> Duration {
        let raw = self.first_byte_ms + i as u64 * self.chunk_delay_ms;
        let paced = match tokens {
            None => 0,
            Some(t) if i < t.first_event => 0,
            Some(t) => {
                let k = ((i - t.first_event) as u64).min(t.count.saturating_sub(1));
                self.ttft_ms + k * self.itl_ms
            }
        };
        Duration::from_millis(raw.max(paced))
    }

    /// When a whole (Content-Length) body is due.
    pub fn whole_due(&self, tokens: Option<Tokens>) -> Duration {
        Duration::from_millis(match tokens {
            None => 0,
            Some(t) => self.ttft_ms + t.count.saturating_sub(1) * self.itl_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> u64 {
        d.as_millis() as u64
    }

    #[test]
    fn tokens_are_paced_and_the_rest_goes_at_once() {
        let p = Pacing {
            ttft_ms: 100,
            itl_ms: 10,
            ..Pacing::default()
        };
        // Anthropic-like: 3 preamble events, 4 tokens, 3 trailing events.
        let t = Some(Tokens {
            count: 4,
            first_event: 3,
        });
        let due: Vec<u64> = (0..10).map(|i| ms(p.event_due(t, i))).collect();
        assert_eq!(due, [0, 0, 0, 100, 110, 120, 130, 130, 130, 130]);
        assert_eq!(ms(p.whole_due(t)), 130);
        // No tokens: the end events come at TTFT.
        let none = Some(Tokens {
            count: 0,
            first_event: 0,
        });
        assert_eq!(ms(p.event_due(none, 0)), 100);
        assert_eq!(ms(p.whole_due(none)), 100);
        // Not a generation: no pacing.
        assert_eq!(ms(p.event_due(None, 5)), 0);
    }

    #[test]
    fn raw_faults_apply_to_every_event_and_the_later_wins() {
        let p = Pacing {
            ttft_ms: 50,
            itl_ms: 0,
            first_byte_ms: 10,
            chunk_delay_ms: 20,
        };
        let t = Some(Tokens {
            count: 3,
            first_event: 0,
        });
        let due: Vec<u64> = (0..5).map(|i| ms(p.event_due(t, i))).collect();
        assert_eq!(due, [50, 50, 50, 70, 90]);
        assert_eq!(ms(p.event_due(None, 2)), 50);
    }
}
