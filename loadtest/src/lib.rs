//! modelgate's load-testing tools: [`mock`] is the mock LLM upstream behind
//! the `mock-llm` binary, used by the integration tests; [`load`] is
//! `modelgate-load`, the capacity-testing tool.

pub mod load;
pub mod mock;
