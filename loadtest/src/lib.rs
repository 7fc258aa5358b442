//! modelgate's load-testing tools. [`mock`] is the mock LLM upstream behind
//! the `mock-llm` binary, used by the integration tests.

pub mod mock;
