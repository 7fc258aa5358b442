//! Outlier ejection, per core (as Envoy does): a service with N consecutive
//! connect failures or 5xx answers is skipped for a back-off period while
//! other targets can serve. Never shared across cores: no locks; each core
//! learns on its own traffic.

use crate::snapshot::Service;
use std::cell::RefCell;
use std::time::{Duration, Instant};

/// Ejections back off up to this many times the base period.
const MAX_BACKOFF: u32 = 10;

#[derive(Default)]
struct State {
    consecutive: u32,
    ejected_until: Option<Instant>,
    /// Ejections so far without a success in between: the back-off factor.
    ejections: u32,
}

/// Per-core health of services, keyed by service name so it survives
/// reloads that keep the service.
#[derive(Default)]
pub struct Health {
    services: RefCell<crate::FastMap<String, State>>,
}

impl Health {
    pub fn is_ejected(&self, svc: &Service) -> bool {
        if svc.outlier.is_none() {
            return false;
        }
        let services = self.services.borrow();
        // The clock is read only for a service that has been ejected.
        matches!(services.get(&svc.name), Some(State { ejected_until: Some(t), .. }) if *t > Instant::now())
    }

    /// Records the outcome of one attempt: `ok` unless it failed to connect,
    /// timed out, or answered 5xx.
    pub fn record(&self, svc: &Service, ok: bool) {
        let Some(policy) = svc.outlier else { return };
        let mut services = self.services.borrow_mut();
        if ok {
            if let Some(s) = services.get_mut(&svc.name) {
                s.consecutive = 0;
                s.ejections = 0;
                s.ejected_until = None;
            }
            return;
        }
        let s = services.entry(svc.name.clone()).or_default();
        s.consecutive += 1;
        if s.consecutive >= policy.consecutive_failures {
            s.ejections = (s.ejections + 1).min(MAX_BACKOFF);
            s.ejected_until = Some(Instant::now() + policy.ejection * s.ejections);
            s.consecutive = 0;
            tracing::warn!(service = %svc.name, for_ms = (policy.ejection * s.ejections).as_millis() as u64, "service ejected");
        }
    }
}

/// A service's ejection policy.
#[derive(Clone, Copy, Debug)]
pub struct OutlierPolicy {
    pub consecutive_failures: u32,
    pub ejection: Duration,
}
