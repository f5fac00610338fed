//! The operator binary run as its own process, the way a Deployment runs it: under the
//! chart's ServiceAccount (a kubeconfig with its token), killed with SIGKILL for crash
//! tests, and measured through `/proc` (its memory) and its admin port (its metrics).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;

use crate::{TestEnv, chart_service_account, service_account_kubeconfig, workspace_root};

/// The operator binary, built once per test process (a no-op when `cargo build` ran).
async fn operator_binary() -> Result<PathBuf> {
    static BUILT: OnceCell<PathBuf> = OnceCell::const_new();
    BUILT
        .get_or_try_init(|| async {
            let status = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "-p", "mvdns-operator", "--bin", "mvdns-operator"])
                .current_dir(workspace_root())
                .status()
                .await?;
            if !status.success() {
                bail!("cargo build -p mvdns-operator failed");
            }
            let target =
                std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from);
            Ok(target.join("debug/mvdns-operator"))
        })
        .await
        .cloned()
}

/// A free loopback port (the kernel's pick; released again for the child to bind).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// An operator process; killed if dropped.
#[derive(Debug)]
pub struct OperatorProcess {
    child: Child,
    pub admin: SocketAddr,
    pub log: PathBuf,
}

impl OperatorProcess {
    pub async fn start(env: &TestEnv, namespace: &str, identity: &str, lease_seconds: u64) -> Result<Self> {
        Self::start_with_args(env, namespace, identity, lease_seconds, &[]).await
    }

    /// Like `start`, with more command-line flags (`--zone`, `--restrict-zone`, ...).
    pub async fn start_with_args(
        env: &TestEnv,
        namespace: &str,
        identity: &str,
        lease_seconds: u64,
        extra_args: &[&str],
    ) -> Result<Self> {
        let account = chart_service_account(namespace, "operator");
        let kubeconfig = service_account_kubeconfig(env, namespace, &account).await?;
        let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let log = env.dir.join(format!("{namespace}-{identity}.log"));
        let child = Command::new(operator_binary().await?)
            .args(["--lease-namespace", namespace, "--identity", identity])
            .args(["--lease-duration-seconds", &lease_seconds.to_string()])
            .args(["--lease-renew-seconds", "1", "--admin-listen", &admin.to_string()])
            .args(extra_args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start mvdns-operator")?;
        let process = Self { child, admin, log };
        process.wait_admin().await?;
        Ok(process)
    }

    async fn wait_admin(&self) -> Result<()> {
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(self.admin).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "the operator's admin port {} did not open; log: {}",
            self.admin,
            self.log.display()
        )
    }

    pub fn pid(&self) -> Result<u32> {
        self.child.id().context("the operator has exited")
    }

    /// Resident memory now, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> Result<u64> {
        proc_status_kib(self.pid()?, "VmRSS:")
    }

    /// The metrics text the admin port serves.
    pub async fn metrics(&self) -> Result<String> {
        let mut stream = tokio::net::TcpStream::connect(self.admin).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: operator\r\n\r\n")
            .await?;
        let mut response = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response)).await??;
        let (head, body) = response.split_once("\r\n\r\n").context("no HTTP body")?;
        if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
            bail!("GET /metrics: {head}");
        }
        Ok(body.to_owned())
    }

    /// SIGKILL, like a node or OOM kill: no lease release, no goodbye.
    pub async fn kill(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// SIGTERM and wait (at most 15 s): a graceful shutdown releases the lease.
    pub async fn stop(mut self) -> Result<()> {
        let pid = self.pid()?;
        Command::new("kill").args(["-TERM", &pid.to_string()]).status().await?;
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!("the operator exited with {status}; log: {}", self.log.display());
                }
                Ok(())
            }
            Err(_) => bail!("the operator did not stop within 15 s of SIGTERM"),
        }
    }
}

/// A `kB` field of `/proc/<pid>/status`.
fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}
