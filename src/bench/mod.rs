//! `gatehouse bench`: a closed-loop load generator that speaks mTLS, for load-testing a
//! gateway the way its clients reach it (wrk and h2load cannot present a client
//! certificate, and few tools open one TLS connection per request).
//!
//! [`Plan`] is everything a worker needs, read-only and shared: where to dial, the TLS
//! client, the request, the measured window. [`worker`] runs the three loops (keep-alive
//! HTTP/1.1, HTTP/2 streams, a connection per request); each worker keeps its own
//! [`tally::Tally`] (no lock while loading), merged at the end into the report.

mod plan;
mod tally;
mod worker;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::cli::BenchArgs;
use plan::{Mode, Plan};
use tally::Tally;

/// A connect, a handshake or one request taking longer than this is a `timeout` error.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// `gatehouse bench URL ...`: exit 0, or 1 when every request failed (or the setup did).
pub fn run(args: &BenchArgs) -> ExitCode {
    let setup = match plan::Setup::from_args(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gatehouse bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gatehouse bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let plan = Arc::new(setup.start().await?);
        Ok::<_, String>((load(&plan).await, plan))
    });
    let ((tally, unfinished), plan) = match outcome {
        Ok(o) => o,
        Err(e) => {
            eprintln!("gatehouse bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = tally::Report::new(&plan, &tally);
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    if unfinished > 0 {
        eprintln!("gatehouse bench: {unfinished} workers did not finish in time and were stopped");
    }
    if tally.responses() == 0 {
        eprintln!("gatehouse bench: every request failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Runs the workers until the window closes, then merges their tallies. Each worker stops
/// starting work at the end of the window and every step it takes is bounded, so they all
/// end within two steps of it; one that does not is aborted (and counted).
async fn load(plan: &Arc<Plan>) -> (Tally, usize) {
    let mut workers = JoinSet::new();
    for _ in 0..plan.connections {
        let plan = plan.clone();
        match plan.mode {
            Mode::Http1 => workers.spawn(worker::http1(plan)),
            Mode::Http2 { streams } => workers.spawn(worker::http2(plan, streams)),
            Mode::NewConnection { .. } => workers.spawn(worker::new_connection(plan)),
        };
    }
    let deadline = plan.window.stop + 2 * STEP_TIMEOUT + Duration::from_secs(1);
    let mut total = Tally::new();
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline.into(), workers.join_next()).await
    {
        if let Ok(t) = joined {
            total.merge(t);
        }
    }
    let unfinished = workers.len();
    workers.abort_all();
    (total, unfinished)
}
