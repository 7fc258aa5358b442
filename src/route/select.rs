//! Attempt order: the primary target chosen by the service mode (single,
//! by_model glob rules, by_weight smooth weighted round-robin), then the
//! fallback targets in order.

use super::glob::glob_match;
use super::swrr::Swrr;
use crate::error::{Error, Kind};
use crate::snapshot::{ModelApi, Selection, Snapshot, Target};

/// Per-core selection state: one SWRR per by_weight Model API, rebuilt
/// when the snapshot changes.
#[derive(Default)]
pub struct SelectState {
    generation: u64,
    swrr: Vec<Option<Swrr>>,
}

impl SelectState {
    fn swrr(&mut self, snap: &Snapshot, api: usize, weights: &[u32]) -> &mut Swrr {
        if self.generation != snap.generation || self.swrr.len() != snap.apis.len() {
            self.generation = snap.generation;
            self.swrr = (0..snap.apis.len()).map(|_| None).collect();
        }
        self.swrr[api].get_or_insert_with(|| Swrr::new(weights))
    }
}

/// The targets to try, in order. `model` is the client's model name;
/// `ejected` tells which services outlier detection skips for now: they
/// are left out while another target remains.
pub fn attempt_order<'s>(
    snap: &'s Snapshot,
    api_index: usize,
    model: Option<&str>,
    state: &mut SelectState,
    ejected: impl Fn(usize) -> bool,
) -> Result<Vec<&'s Target>, Error> {
    let api: &ModelApi = &snap.apis[api_index];
    let primary = match &api.selection {
        Selection::Single(t) => t,
        Selection::ByModel(rules) => {
            let name = model.unwrap_or("");
            match rules.iter().find(|(pattern, _)| glob_match(pattern, name)) {
                Some((_, t)) => t,
                None => {
                    return Err(Error::new(
                        Kind::ModelNotFound,
                        format!("model {name:?} is not served by Model API {}", api.name),
                    ))
                }
            }
        }
        Selection::ByWeight { targets, weights } => {
            let swrr = state.swrr(snap, api_index, weights);
            let pick = swrr.next_excluding(|i| ejected(targets[i].service));
            &targets[pick.unwrap_or_else(|| swrr.next())]
        }
    };
    let mut order = Vec::with_capacity(1 + api.fallback.len());
    order.push(primary);
    order.extend(api.fallback.iter());
    if order.iter().any(|t| !ejected(t.service)) {
        order.retain(|t| !ejected(t.service));
    }
    Ok(order)
}
