//! `modelgate-load`: capacity testing for inference endpoints
//! (PRODUCT.md §10).
//!
//! The request's path through the modules: [`cli`] reads the command line,
//! [`workload`] renders the requests once, [`run`] starts one monoio
//! runtime per thread and drives the load ([`schedule`] for open-loop
//! send times), each request going through [`exchange`] over [`http`]
//! connections ([`tls`] for https) with [`sse`] reading the stream; [`stats`] holds the HDR
//! histograms, [`progress`] the live line, [`report`] the table and JSON,
//! [`sweep`] the SLO search; [`app`] ties them together.

pub mod app;
pub mod cli;
pub mod exchange;
pub mod http;
pub mod progress;
pub mod report;
pub mod run;
pub mod schedule;
pub mod sse;
pub mod stats;
pub mod sweep;
pub mod tls;
pub mod workload;
