//! Which Model API and route a request is for (`api`), and which services
//! to try in which order (`select`).

pub mod api;
pub mod glob;
pub mod select;
pub mod swrr;
