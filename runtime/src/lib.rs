//! What both binaries share at run time, in one place: the common flags
//! ([`CommonArgs`]: log format and level, the admin address), logging, signals, the admin
//! server ([`admin`]), the watches' retry schedule ([`backoff`]), leading-edge
//! coalescing ([`coalesce`]) and dual-stack listening ([`listen`]).
//!
//! A crate of its own rather than part of `mvdns-api`: the API crate is what `crdgen`
//! and every client of the types build, and it stays free of tokio, axum and the kube
//! runtime.

pub mod admin;
pub mod backoff;
pub mod coalesce;
pub mod listen;

use std::net::SocketAddr;

use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The flags both binaries take (each also an environment variable).
#[derive(Clone, Debug, Args)]
pub struct CommonArgs {
    /// Log format.
    #[arg(long, env = "MVDNS_LOG_FORMAT", value_enum, default_value = "plain")]
    pub log_format: LogFormat,
    /// Log level or filter (`info`, `debug`, `mvdns_operator=trace,info`, ...); `RUST_LOG`
    /// wins when it is set.
    #[arg(long, env = "MVDNS_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Address of the admin server (/livez, /readyz, /metrics); each binary has its
    /// own default (the operator [::]:8080, the DNS server [::]:9153; `[::]` takes both
    /// address families).
    #[arg(long, env = "MVDNS_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
}

impl CommonArgs {
    /// Starts logging as the flags say; a filter that cannot be parsed is an error that
    /// names the flag.
    pub fn init_logging(&self) -> Result<(), String> {
        let filter = match tracing_subscriber::EnvFilter::try_from_default_env() {
            Ok(filter) => filter,
            Err(_) => tracing_subscriber::EnvFilter::try_new(&self.log_level)
                .map_err(|error| format!("--log-level {:?}: {error}", self.log_level))?,
        };
        let logs = tracing_subscriber::fmt().with_env_filter(filter);
        match self.log_format {
            LogFormat::Plain => logs.init(),
            LogFormat::Json => logs.json().init(),
        }
        Ok(())
    }
}

/// A token cancelled on SIGTERM or SIGINT (Ctrl-C), after logging it.
pub fn shutdown_on_signal() -> CancellationToken {
    let shutdown = CancellationToken::new();
    let cancel = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        cancel.cancel();
    });
    shutdown
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(term) => {
                term.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminated => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        common: CommonArgs,
    }

    #[test]
    fn the_common_flags_parse_with_their_defaults() {
        let flags = Flags::try_parse_from(["x"]).expect("defaults");
        assert_eq!(flags.common.log_format, LogFormat::Plain);
        assert_eq!(flags.common.log_level, "info");
        let flags =
            Flags::try_parse_from(["x", "--log-format", "json", "--admin-listen", "127.0.0.1:9"]).expect("flags");
        assert_eq!(flags.common.log_format, LogFormat::Json);
        assert_eq!(flags.common.admin_listen, Some("127.0.0.1:9".parse().expect("address")));
        let error = Flags::try_parse_from(["x", "--log-format", "xml"]).expect_err("a bad format");
        assert!(error.to_string().contains("plain"), "{error}");
    }
}
