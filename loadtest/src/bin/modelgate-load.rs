//! `modelgate-load`: capacity testing for inference endpoints. See
//! `modelgate_loadtest::load` and `modelgate-load --help`.

use clap::Parser;
use modelgate_loadtest::load::{app, cli::Args};

fn main() {
    let args = Args::parse();
    std::process::exit(app::main(args));
}
