//! A small DNS client on hickory-proto over UDP and TCP sockets: exact packets, EDNS and
//! Client Subnet when asked, the answer checked against the query's ID. For thousands of
//! queries in a loop, [`UdpAsker`] keeps one socket.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

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
