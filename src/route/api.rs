//! Host → Model API (most specific domain, then longest base path) → route.

use crate::config::catalog::{self, RouteDef, RouteMatch};
use crate::error::{Error, Kind};
use crate::snapshot::{under_base, Snapshot};

pub struct Matched<'a> {
    pub api: usize,
    pub route: &'static RouteDef,
    /// The path to forward: without the base path when the API strips it.
    pub forward_path: &'a str,
}

/// Finds the Model API and route for a request. On failure also returns
/// the Model API that was found (if any) so the error takes its shape.
pub fn find<'a>(
    snap: &Snapshot,
    host: &str,
    method: &str,
    path: &'a str,
) -> Result<Matched<'a>, (Option<usize>, Error)> {
    let candidates = snap.hosts.lookup(host);
    let Some((api, rest)) = candidates
        .iter()
        .find_map(|&i| under_base(&snap.apis[i].base_path, path).map(|rest| (i, rest)))
    else {
        let e = Error::new(Kind::NotFound, format!("no Model API serves {host}{path}"));
        return Err((None, e));
    };
    let model_api = &snap.apis[api];
    let route_path = if rest.is_empty() { "/" } else { rest };
    match catalog::match_route(model_api.routes, method, route_path) {
        RouteMatch::Found(route) => Ok(Matched {
            api,
            route,
            forward_path: if model_api.strip_base_path {
                route_path
            } else {
                path
            },
        }),
        RouteMatch::MethodNotAllowed(route) => {
            // RFC 9110 §15.5.6: a 405 says which methods the path takes.
            let allowed = model_api
                .routes
                .iter()
                .filter(|r| r.matches_path(route_path))
                .fold(route.methods, |m, r| m.union(r.methods));
            let mut e = Error::new(
                Kind::MethodNotAllowed,
                format!("{method} is not allowed on {} ({})", path, route.name),
            );
            e.allow = Some(allowed);
            Err((Some(api), e))
        }
        RouteMatch::NotFound => Err((
            Some(api),
            Error::new(
                Kind::NotFound,
                format!("Model API {} has no route for {path}", model_api.name),
            ),
        )),
    }
}
