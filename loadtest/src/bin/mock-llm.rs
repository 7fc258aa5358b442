//! `mock-llm`: a mock LLM upstream for modelgate's integration tests.
//!
//! Prints `listening on ADDR` once bound, then serves until killed. See
//! `modelgate_loadtest::mock` for the endpoints and the `x-mock-*` headers.

use std::io::Write;
use std::sync::Arc;

use clap::Parser;
use modelgate_loadtest::mock::{self, Config, State};

#[derive(Parser, Debug)]
#[command(
    name = "mock-llm",
    about = "Mock LLM upstream (OpenAI, Anthropic, DashScope shapes) with fault injection"
)]
struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Server name: sent as `x-mock-name`, matched by `x-mock-fault-target`.
    #[arg(long, default_value = "mock")]
    name: String,
    /// Time between output tokens of a generation, in ms (per request:
    /// `x-mock-itl-ms`). A non-streamed answer comes when its last token
    /// would.
    #[arg(long = "itl-ms", default_value_t = 0)]
    itl_ms: u64,
    /// Time to the first output token of a generation, in ms (per request:
    /// `x-mock-ttft-ms`).
    #[arg(long = "ttft-ms", default_value_t = 0)]
    ttft_ms: u64,
    /// Raw delay before every stream event, in ms, generation or not (per
    /// request: `x-mock-chunk-delay-ms`).
    #[arg(long = "chunk-delay-ms", default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Generations served at once at most, like an inference server's
    /// batch; more requests queue for a slot (0: no limit).
    #[arg(long = "max-concurrency", default_value_t = 0)]
    max_concurrency: usize,
    /// Single-threaded event loops sharing the listener.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() {
    let cli = Cli::parse();
    let listener = match mock::bind(&cli.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mock-llm: cannot listen on {}: {e}", cli.listen);
            std::process::exit(1);
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mock-llm: {e}");
            std::process::exit(1);
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {addr}");
        let _ = out.flush();
    }
    let state = Arc::new(State::new(Config {
        name: cli.name,
        ttft_ms: cli.ttft_ms,
        itl_ms: cli.itl_ms,
        max_concurrency: cli.max_concurrency,
        chunk_delay_ms: cli.chunk_delay_ms,
    }));
    if let Err(e) = mock::run(state, listener, cli.threads) {
        eprintln!("mock-llm: {e}");
        std::process::exit(1);
    }
}
