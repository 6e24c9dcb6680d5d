//! `gor-agent`: translate a GoReplay command line, parse and check the configuration, set
//! up logs, run the pipeline (or, for `gor-agent check`, report on the host; for
//! `gor-agent report`, on diffs files).
use clap::Parser;
use gor_agent::config::{Cli, EXIT_USAGE};

fn main() {
    // GoReplay's command lines (`--input-raw :80 --output-http URL`) become gor's first.
    let args = match gor_agent::goreplay::translate(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(refused) => {
            eprintln!("gor-agent: {refused}");
            std::process::exit(EXIT_USAGE);
        }
    };
    let cli = Cli::parse_from(args);
    // `report` reads diffs files: none of the agent's settings apply to it.
    if let Some(r) = cli.report() {
        std::process::exit(gor_agent::diffs_report::run(&r.files, r.html.as_deref()));
    }
    // Values first, then what the host says of them (interfaces, files, the middleware
    // program): both before anything touches the kernel.
    let cfg = match cli.validate().and_then(|cfg| cli.resolve(cfg)) {
        Ok(cfg) => cfg,
        Err(errors) => {
            for e in &errors {
                eprintln!("gor-agent: {e}");
            }
            eprintln!(
                "gor-agent: {} invalid setting(s); nothing was attached",
                errors.len()
            );
            std::process::exit(EXIT_USAGE);
        }
    };
    if cli.is_check() {
        std::process::exit(gor_agent::check::run(&cfg));
    }
    gor_agent::logging::init(&cfg.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.log.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gor-agent: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    // On a worker, not in `block_on`: the worker that the ring buffer's readiness wakes
    // then runs the pipeline itself, instead of waking the main thread to do it (two
    // context switches per wake-up instead of one).
    let result = runtime
        .block_on(runtime.spawn(gor_agent::agent::run(cfg)))
        .unwrap_or_else(|e| Err(anyhow::anyhow!("the agent's task failed: {e}")));
    if let Err(e) = result {
        tracing::error!("{e:#}");
        eprintln!("gor-agent: {e:#}");
        std::process::exit(1);
    }
}
