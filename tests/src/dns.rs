//! Running the DNS server in a test under the chart's DNS ServiceAccount, and two real
//! DNS clients to ask it: a small one on hickory-proto over UDP and TCP sockets (for
//! thousands of queries and exact packets), and `dig` (BIND's client) as an independent
//! implementation.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use mvdns_server::Shared;
use mvdns_server::server::{self, ServerConfig};
use mvdns_server::watch::{self, WatchConfig};
use mvdns_server::zone::{ZoneSettings, Zones};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::{TestEnv, chart_service_account, client_from_kubeconfig, service_account_kubeconfig};

/// A DNS server running in this test's runtime under the chart's DNS ServiceAccount,
/// on 127.0.0.1 with a port picked by the kernel.
#[derive(Debug)]
pub struct RunningDns {
    pub address: SocketAddr,
    pub shared: Arc<Shared>,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningDns {
    pub async fn start(env: &TestEnv, namespace: &str, zones: &[&str]) -> Result<Self> {
        Self::start_restricted(env, namespace, zones, &[]).await
    }

    /// With zones only some namespaces may publish in (`ZONE=NAMESPACE[,...]`).
    pub async fn start_restricted(env: &TestEnv, namespace: &str, zones: &[&str], restricted: &[&str]) -> Result<Self> {
        let account = chart_service_account(namespace, "dns");
        let client = client_from_kubeconfig(&service_account_kubeconfig(env, namespace, &account).await?).await?;
        let owned = |items: &[&str]| items.iter().map(|z| (*z).to_owned()).collect();
        let zones = Zones::new(&ZoneSettings {
            apexes: owned(zones),
            restricted: owned(restricted),
            ..ZoneSettings::default()
        })?;
        let shared = Shared::new(zones);
        let config = ServerConfig {
            listen: (Ipv4Addr::LOCALHOST, 0).into(),
            udp_workers: 2,
            max_tcp_connections: 64,
            tcp_idle_timeout: Duration::from_secs(5),
            rate_limit: None,
        };
        let sockets = server::bind(&config)?;
        let address = sockets.address;
        let shutdown = CancellationToken::new();
        let watch_config = WatchConfig {
            namespace: None,
            debounce: Duration::from_millis(5),
        };
        let tasks = vec![
            tokio::spawn(server::serve(sockets, config, shared.clone(), shutdown.clone())),
            tokio::spawn(watch::run(client, watch_config, shared.clone(), shutdown.clone())),
        ];
        Ok(Self {
            address,
            shared,
            shutdown,
            tasks,
        })
    }

    /// Waits (at most 30 s) for the first full sync: before it, the server is not ready.
    pub async fn wait_synced(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.shared.synced.load(Ordering::Acquire) {
            if Instant::now() > deadline {
                bail!("the DNS server did not sync within 30s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

/// A query as sent: the name as written (case kept), with or without EDNS.
#[derive(Clone, Debug)]
pub struct Ask {
    pub name: String,
    pub record_type: RecordType,
    /// `Some(size)` adds an OPT record advertising `size`; `None` sends plain DNS.
    pub edns_payload: Option<u16>,
    /// An EDNS Client Subnet option (address, source prefix length).
    pub client_subnet: Option<(IpAddr, u8)>,
}

impl Ask {
    pub fn new(name: &str, record_type: RecordType) -> Self {
        Self {
            name: name.into(),
            record_type,
            edns_payload: Some(1232),
            client_subnet: None,
        }
    }

    pub fn from_subnet(mut self, address: &str, prefix: u8) -> Self {
        self.client_subnet = address.parse().ok().map(|a| (a, prefix));
        self
    }

    pub fn without_edns(mut self) -> Self {
        self.edns_payload = None;
        self
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let mut message = Message::query();
        message.metadata.id = rand::random();
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(&self.name)?, self.record_type));
        if let Some(size) = self.edns_payload {
            let mut edns = Edns::new();
            edns.set_max_payload(size);
            if let Some((address, prefix)) = self.client_subnet {
                edns.options_mut()
                    .insert(EdnsOption::Subnet(ClientSubnet::new(address, prefix, 0)));
            }
            message.set_edns(edns);
        }
        Ok(message.to_vec()?)
    }
}

/// One query over UDP (2 s timeout, no retry: loopback does not lose packets).
pub async fn udp(server: SocketAddr, ask: &Ask) -> Result<Message> {
    udp_from(IpAddr::V4(Ipv4Addr::LOCALHOST), server, ask).await
}

/// One query over UDP from a chosen source address (any 127.0.0.0/8 address works on
/// Linux loopback), as a client on a particular node would send it.
pub async fn udp_from(source: IpAddr, server: SocketAddr, ask: &Ask) -> Result<Message> {
    let socket = UdpSocket::bind((source, 0)).await?;
    let request = ask.encode()?;
    socket.send_to(&request, server).await?;
    let mut buffer = vec![0u8; 65535];
    let (len, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buffer))
        .await
        .context("no UDP answer within 2s")??;
    check_id(&request, Message::from_vec(&buffer[..len])?)
}

/// Many queries to one server over one bound UDP socket, for a loop that asks often (a
/// fresh socket per query cost the convergence benchmark's poll loops CPU that the
/// processes it measures compete for). A late reply to an earlier query that timed out
/// is skipped by its ID.
#[derive(Debug)]
pub struct UdpAsker {
    socket: UdpSocket,
    server: SocketAddr,
}

impl UdpAsker {
    pub async fn new(server: SocketAddr) -> Result<Self> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        Ok(Self { socket, server })
    }

    /// One query, answered within 2 s.
    pub async fn ask(&self, ask: &Ask) -> Result<Message> {
        let request = ask.encode()?;
        self.socket.send_to(&request, self.server).await?;
        let mut buffer = vec![0u8; 65535];
        let exchange = async {
            loop {
                let (len, from) = self.socket.recv_from(&mut buffer).await?;
                if from != self.server {
                    continue;
                }
                if let Ok(response) = check_id(&request, Message::from_vec(&buffer[..len])?) {
                    return anyhow::Ok(response);
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(2), exchange)
            .await
            .context("no UDP answer within 2s")?
    }
}

/// One query over a fresh TCP connection (2-byte length framing, RFC 7766).
pub async fn tcp(server: SocketAddr, ask: &Ask) -> Result<Message> {
    let request = ask.encode()?;
    let exchange = async {
        let mut stream = TcpStream::connect(server).await?;
        stream.write_u16(u16::try_from(request.len())?).await?;
        stream.write_all(&request).await?;
        let len = stream.read_u16().await?;
        let mut buffer = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buffer).await?;
        anyhow::Ok(Message::from_vec(&buffer)?)
    };
    let response = tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .context("no TCP answer within 2s")??;
    check_id(&request, response)
}

fn check_id(request: &[u8], response: Message) -> Result<Message> {
    let id = u16::from_be_bytes([request[0], request[1]]);
    if response.metadata.id != id {
        bail!("answer ID {} does not match query ID {id}", response.metadata.id);
    }
    Ok(response)
}

/// The data of the answer records as text (`192.0.2.1`, `0 1 8080 target.`), sorted.
pub fn answer_data(response: &Message) -> Vec<String> {
    let mut data: Vec<String> = response.answers.iter().map(|r| r.data.to_string()).collect();
    data.sort();
    data
}

/// Runs `dig @server -p port ARGS...` and returns its stdout.
pub async fn dig(server: SocketAddr, args: &[&str]) -> Result<String> {
    let output = tokio::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .await
        .context("dig is missing: hack/deps.sh installs dnsutils")?;
    Ok(String::from_utf8(output.stdout)?)
}

/// Asks over UDP until `done` holds for the answer (every 50 ms, at most `limit`).
pub async fn wait_answer(
    server: SocketAddr,
    ask: &Ask,
    limit: Duration,
    done: impl Fn(&Message) -> bool,
) -> Result<Message> {
    let deadline = Instant::now() + limit;
    loop {
        let response = udp(server, ask).await?;
        if done(&response) {
            return Ok(response);
        }
        if Instant::now() > deadline {
            bail!(
                "{} {} did not get the expected answer within {limit:?}; last: {response}",
                ask.name,
                ask.record_type
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
