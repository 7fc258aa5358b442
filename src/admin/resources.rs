//! What services, Model APIs and consumers have in common here: where a
//! resource lives (config file or store), who may see it, and the
//! create / replace / delete steps every kind takes.
//!
//! For a scoped token, a resource of another group does not exist: 404
//! like a name nowhere, never 403 (which would tell that it is there).
//! Names are one namespace, so creating a name another group holds is
//! still 409 `already_exists`, and says no more than that.

use super::apply::{apply, Kind};
use super::auth::Access;
use super::error::ApiError;
use crate::config::raw::{ConsumerSpec, ModelApiSpec, RawConfig, ServiceSpec};
use crate::config::valid_name;
use crate::shared::Shared;
use crate::store::{Resources, StoreState};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub trait Resource: Clone + Serialize {
    const KIND: Kind;
    fn name(&self) -> &str;
    fn group(&self) -> &str;
    fn in_file(raw: &RawConfig) -> &Vec<Self>;
    fn in_store(s: &StoreState) -> &Vec<Self>;
    fn in_store_mut(s: &mut StoreState) -> &mut Vec<Self>;
}

macro_rules! resource {
    ($t:ty, $kind:expr, $list:ident) => {
        impl Resource for $t {
            const KIND: Kind = $kind;
            fn name(&self) -> &str {
                &self.name
            }
            fn group(&self) -> &str {
                &self.resource_group
            }
            fn in_file(raw: &RawConfig) -> &Vec<Self> {
                &raw.$list
            }
            fn in_store(s: &StoreState) -> &Vec<Self> {
                &s.$list
            }
            fn in_store_mut(s: &mut StoreState) -> &mut Vec<Self> {
                &mut s.$list
            }
        }
    };
}

resource!(ServiceSpec, Kind::Service, services);
resource!(ModelApiSpec, Kind::ModelApi, model_apis);
resource!(ConsumerSpec, Kind::Consumer, consumers);

/// Where a resource was found.
pub enum Found<'a, R> {
    /// Declared in the config file: read-only here.
    File(&'a R),
    /// Made through the admin API, at this index of the store's list.
    Store(usize, &'a R),
}

impl<'a, R: Resource> Found<'a, R> {
    pub fn spec(&self) -> &'a R {
        match self {
            Found::File(r) | Found::Store(_, r) => r,
        }
    }
    pub fn managed_by_config(&self) -> bool {
        matches!(self, Found::File(_))
    }
}

pub fn find<'a, R: Resource>(res: &'a Resources, name: &str) -> Option<Found<'a, R>> {
    if let Some(r) = R::in_file(&res.file).iter().find(|r| r.name() == name) {
        return Some(Found::File(r));
    }
    R::in_store(&res.store.state)
        .iter()
        .enumerate()
        .find(|(_, r)| r.name() == name)
        .map(|(i, r)| Found::Store(i, r))
}

/// The resource `name` if it exists and `access` reaches it; 404 either
/// way, so a scoped token cannot tell another group's name from none.
pub fn find_visible<'a, R: Resource>(
    res: &'a Resources,
    access: &Access,
    name: &str,
) -> Result<Found<'a, R>, ApiError> {
    find::<R>(res, name)
        .filter(|found| access.allows(found.spec().group()))
        .ok_or_else(|| ApiError::not_found(R::KIND.label(), name))
}

/// `?resource_group=` of list endpoints.
#[derive(Deserialize)]
pub struct ListQuery {
    pub resource_group: Option<String>,
}

/// Every resource of a kind that `access` reaches, file ones first, with
/// whether each is managed by the config file.
pub fn listing<'a, R: Resource>(
    res: &'a Resources,
    access: &Access,
    q: &ListQuery,
) -> Vec<(&'a R, bool)> {
    let file = R::in_file(&res.file).iter().map(|r| (r, true));
    let store = R::in_store(&res.store.state).iter().map(|r| (r, false));
    file.chain(store)
        .filter(|(r, _)| access.allows(r.group()))
        .filter(|(r, _)| q.resource_group.as_deref().is_none_or(|g| g == r.group()))
        .collect()
}

/// The JSON of a resource as GET shows it.
pub fn view<R: Resource>(spec: &R, managed_by_config: bool) -> Value {
    let mut v = serde_json::to_value(spec).expect("resource serializes");
    v["managed_by_config"] = Value::Bool(managed_by_config);
    v
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "name",
            "must be 1-64 letters, digits, '_' or '-'",
        ))
    }
}

/// Adds a new resource to the store and applies it.
pub async fn create<R: Resource>(
    shared: &Shared,
    res: &mut Resources,
    access: &Access,
    spec: R,
) -> Result<(), ApiError> {
    check_name(spec.name())?;
    access.check(spec.group())?;
    if let Some(found) = find::<R>(res, spec.name()) {
        let visible = access.allows(found.spec().group());
        let place = if visible && found.managed_by_config() {
            " (declared in the config file)"
        } else {
            ""
        };
        return Err(ApiError::conflict(
            "already_exists",
            format!(
                "{} {:?} already exists{place}",
                R::KIND.label(),
                spec.name()
            ),
        ));
    }
    let mut next = res.store.state.clone();
    let name = spec.name().to_string();
    R::in_store_mut(&mut next).push(spec);
    apply(shared, res, access, next, Some((R::KIND, &name))).await
}

/// Replaces a store resource by `spec`; `keep` may carry values over from
/// the old one (masked secrets, key hashes).
pub async fn replace<R: Resource>(
    shared: &Shared,
    res: &mut Resources,
    access: &Access,
    name: &str,
    mut spec: R,
    keep: impl FnOnce(&R, &mut R),
) -> Result<(), ApiError> {
    if spec.name() != name {
        return Err(ApiError::invalid(
            "name",
            format!("must be {name:?}, the name in the path (resources cannot be renamed)"),
        ));
    }
    let index = match find_visible::<R>(res, access, name)? {
        Found::File(_) => return Err(ApiError::managed_by_config(R::KIND.label(), name)),
        Found::Store(i, old) => {
            access.check(spec.group())?;
            keep(old, &mut spec);
            i
        }
    };
    let mut next = res.store.state.clone();
    R::in_store_mut(&mut next)[index] = spec;
    apply(shared, res, access, next, Some((R::KIND, name))).await
}

/// Removes a store resource; returns it.
pub async fn remove<R: Resource>(
    shared: &Shared,
    res: &mut Resources,
    access: &Access,
    name: &str,
) -> Result<R, ApiError> {
    let index = match find_visible::<R>(res, access, name)? {
        Found::File(_) => return Err(ApiError::managed_by_config(R::KIND.label(), name)),
        Found::Store(i, _) => i,
    };
    let mut next = res.store.state.clone();
    let old = R::in_store_mut(&mut next).remove(index);
    apply(shared, res, access, next, None).await?;
    Ok(old)
}

/// The effective config's Model APIs (file and store).
pub fn all_model_apis(res: &Resources) -> impl Iterator<Item = &ModelApiSpec> {
    res.file
        .model_apis
        .iter()
        .chain(res.store.state.model_apis.iter())
}
