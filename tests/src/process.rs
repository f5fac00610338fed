//! The binaries run as their own processes, the way Deployments run them: under the
//! chart's ServiceAccounts (a kubeconfig with the token), killed with SIGKILL for crash
//! tests, and measured through `/proc` (memory, CPU) and their admin port (metrics).
//!
//! Tests use debug binaries, built once per test process (a no-op after `cargo build`).
//! Benchmarks set `MVDNS_BIN_DIR` (for example `target/release`) to run those instead.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;

use crate::{TestEnv, chart_service_account, service_account_kubeconfig, workspace_root};

/// The path of binary `bin` of package `package`: from `MVDNS_BIN_DIR` if set, else the
/// debug build, built once per test process into `cell`.
async fn binary(cell: &'static OnceCell<PathBuf>, package: &str, bin: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("MVDNS_BIN_DIR") {
        let path = PathBuf::from(dir).join(bin);
        if !path.is_file() {
            bail!("MVDNS_BIN_DIR has no {bin}: {}", path.display());
        }
        return Ok(path);
    }
    cell.get_or_try_init(|| async {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", package, "--bin", bin])
            .current_dir(workspace_root())
            .status()
            .await?;
        if !status.success() {
            bail!("cargo build -p {package} failed");
        }
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from);
        Ok(target.join("debug").join(bin))
    })
    .await
    .cloned()
}

/// A free loopback port (the kernel's pick; released again for the child to bind).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A running binary with an admin port; killed if dropped.
#[derive(Debug)]
pub struct Process {
    child: Child,
    /// What it is, for messages: "the operator", "the DNS server".
    what: &'static str,
    pub admin: SocketAddr,
    pub log: PathBuf,
}

impl Process {
    /// Starts `binary` with `args` and `--admin-listen`, under the kubeconfig of the chart's
    /// ServiceAccount `role` ("operator" or "dns") in `namespace`; returns once the admin
    /// port accepts connections.
    async fn start(
        env: &TestEnv,
        namespace: &str,
        role: &str,
        what: &'static str,
        binary: PathBuf,
        args: &[String],
        log_name: &str,
    ) -> Result<Self> {
        let account = chart_service_account(namespace, role);
        let kubeconfig = service_account_kubeconfig(env, namespace, &account).await?;
        let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let log = env.dir.join(format!("{namespace}-{log_name}.log"));
        // The binaries log to stdout (as in a pod); both streams go to the log file.
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(&binary)
            .args(args)
            .args(["--admin-listen", &admin.to_string()])
            .env("KUBECONFIG", kubeconfig)
            // MVDNS_CHILD_LOG (a RUST_LOG filter) turns up the processes' logs to trace a run.
            .env(
                "RUST_LOG",
                std::env::var("MVDNS_CHILD_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let process = Self {
            child,
            what,
            admin,
            log,
        };
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
            "the admin port {} of {} did not open; log: {}",
            self.admin,
            self.what,
            self.log.display()
        )
    }

    pub fn pid(&self) -> Result<u32> {
        self.child.id().with_context(|| format!("{} has exited", self.what))
    }

    /// Resident memory now, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> Result<u64> {
        proc_status_kib(self.pid()?, "VmRSS:")
    }

    /// The most resident memory so far, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> Result<u64> {
        proc_status_kib(self.pid()?, "VmHWM:")
    }

    /// User plus system CPU time so far, in seconds.
    pub fn cpu_seconds(&self) -> Result<f64> {
        cpu_seconds_of(self.pid()?)
    }

    /// The metrics text the admin port serves.
    pub async fn metrics(&self) -> Result<String> {
        self.get("/metrics").await
    }

    /// GET `path` on the admin port; the body of a 200 answer.
    pub async fn get(&self, path: &str) -> Result<String> {
        let mut stream = tokio::net::TcpStream::connect(self.admin).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: mvdns\r\n\r\n").as_bytes())
            .await?;
        let mut response = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response)).await??;
        let (head, body) = response.split_once("\r\n\r\n").context("no HTTP body")?;
        if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
            bail!("GET {path}: {head}");
        }
        Ok(body.to_owned())
    }

    /// SIGKILL, like a node or OOM kill: no lease release, no goodbye.
    pub async fn kill(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// SIGTERM and wait (at most 15 s): a graceful shutdown (the operator releases its lease).
    pub async fn stop(mut self) -> Result<()> {
        let pid = self.pid()?;
        Command::new("kill").args(["-TERM", &pid.to_string()]).status().await?;
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!("{} exited with {status}; log: {}", self.what, self.log.display());
                }
                Ok(())
            }
            Err(_) => bail!("{} did not stop within 15 s of SIGTERM", self.what),
        }
    }
}

/// The operator binary as a process.
pub type OperatorProcess = Process;

impl Process {
    /// The operator, with the Lease in `namespace` under `identity`.
    pub async fn operator(env: &TestEnv, namespace: &str, identity: &str, lease_seconds: u64) -> Result<Self> {
        Self::operator_with_args(env, namespace, identity, lease_seconds, &[]).await
    }

    /// Like `operator`, with more command-line flags (`--zone`, `--restrict-zone`, ...).
    pub async fn operator_with_args(
        env: &TestEnv,
        namespace: &str,
        identity: &str,
        lease_seconds: u64,
        extra_args: &[&str],
    ) -> Result<Self> {
        static BUILT: OnceCell<PathBuf> = OnceCell::const_new();
        let binary = binary(&BUILT, "mvdns-operator", "mvdns-operator").await?;
        let mut args: Vec<String> = [
            "--lease-namespace",
            namespace,
            "--identity",
            identity,
            "--lease-duration-seconds",
            &lease_seconds.to_string(),
            "--lease-renew-seconds",
            "1",
            // The tests' endpoints, as in-process operators get them (test_probe_policy);
            // the binary protects the API server's address (127.0.0.1) itself.
            "--probe-allow-cidr",
            &crate::operator::TEST_ENDPOINT_BLOCKS.join(","),
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        args.extend(extra_args.iter().map(|a| (*a).to_owned()));
        Self::start(env, namespace, "operator", "the operator", binary, &args, identity).await
    }

    /// The DNS server for `zones` on `listen`, watching every namespace, named `name` in
    /// its log file.
    pub async fn dns(env: &TestEnv, namespace: &str, name: &str, zones: &[&str], listen: SocketAddr) -> Result<Self> {
        static BUILT: OnceCell<PathBuf> = OnceCell::const_new();
        let binary = binary(&BUILT, "mvdns-server", "mvdns-server").await?;
        let args = vec![
            "--zone".to_owned(),
            zones.join(","),
            "--listen".to_owned(),
            listen.to_string(),
        ];
        Self::start(env, namespace, "dns", "the DNS server", binary, &args, name).await
    }

    /// Waits (at most `limit`) until `/readyz` answers 200: the first full sync is done.
    pub async fn wait_ready(&self, limit: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        while self.get("/readyz").await.is_err() {
            if tokio::time::Instant::now() > deadline {
                bail!("{} not ready within {limit:?}; log: {}", self.what, self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

fn clock_ticks_per_second() -> f64 {
    // USER_HZ is 100 on every Linux architecture this runs on (getconf CLK_TCK).
    100.0
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`).
/// The CPU time (user and system) process `pid` has used, in seconds.
pub fn cpu_seconds_of(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(") ").context("/proc stat")?.1.split(' ').collect();
    let ticks = |i: usize| -> Result<f64> { Ok(fields.get(i).context("/proc stat field")?.parse::<f64>()?) };
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    Ok((ticks(11)? + ticks(12)?) / clock_ticks_per_second())
}

pub fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}
