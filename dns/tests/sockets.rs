//! The socket loops on loopback, without Kubernetes: bounded TCP connections, idle
//! timeouts, and hostile packets never stopping the answers to others.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use mvdns_server::rrl::RateLimitConfig;
use mvdns_testkit::loopback::{LoopbackOptions, LoopbackServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn start(max_tcp_connections: usize, idle: Duration) -> LoopbackServer {
    start_limited(max_tcp_connections, idle, None)
}

/// The test kit's loopback server with nothing but the zone: the apex answers, everything
/// else is NXDOMAIN.
fn start_limited(max_tcp_connections: usize, idle: Duration, rate_limit: Option<RateLimitConfig>) -> LoopbackServer {
    let options = LoopbackOptions {
        max_tcp_connections,
        tcp_idle_timeout: idle,
        rate_limit,
    };
    LoopbackServer::start(&[], options).expect("a loopback server")
}

fn soa_query() -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = 4242;
    message.add_query(Query::query(
        Name::from_ascii("example.internal.").expect("name"),
        RecordType::SOA,
    ));
    message.to_vec().expect("encode")
}

async fn udp_soa(server: SocketAddr) -> Message {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind");
    udp_soa_from(&socket, server).await.expect("UDP answer within 2s")
}

/// One SOA query from `socket`; `None` if no answer comes within 2 s.
async fn udp_soa_from(socket: &UdpSocket, server: SocketAddr) -> Option<Message> {
    socket.send_to(&soa_query(), server).await.expect("send");
    let mut buffer = vec![0u8; 4096];
    let (len, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buffer))
        .await
        .ok()?
        .expect("receive");
    Some(Message::from_vec(&buffer[..len]).expect("decodes"))
}

/// Sends one framed query on `stream` and reads the framed answer.
async fn tcp_soa(stream: &mut TcpStream) -> std::io::Result<Message> {
    let query = soa_query();
    stream.write_u16(u16::try_from(query.len()).expect("small")).await?;
    stream.write_all(&query).await?;
    let len = stream.read_u16().await?;
    let mut buffer = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buffer).await?;
    Message::from_vec(&buffer).map_err(std::io::Error::other)
}

#[tokio::test]
async fn tcp_connections_are_bounded_and_idle_ones_closed() {
    let dns = start(2, Duration::from_millis(800));
    let (server, shared) = (dns.address, dns.shared.clone());
    // Two clients hold connections open without sending anything (slow-loris style).
    let mut held = [
        TcpStream::connect(server).await.expect("connect"),
        TcpStream::connect(server).await.expect("connect"),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A third connection is closed at once; UDP keeps answering meanwhile.
    let mut third = TcpStream::connect(server).await.expect("connect");
    assert!(tcp_soa(&mut third).await.is_err(), "over the limit: closed");
    assert_eq!(udp_soa(server).await.answers.len(), 1);
    // A held connection still works while it is used.
    assert_eq!(tcp_soa(&mut held[0]).await.expect("answer").answers.len(), 1);
    // After the idle timeout the server closes silent connections and frees the slots.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut byte = [0u8; 1];
    assert_eq!(
        held[1].read(&mut byte).await.expect("closed cleanly"),
        0,
        "idle connection closed"
    );
    let mut fresh = TcpStream::connect(server).await.expect("connect");
    assert_eq!(tcp_soa(&mut fresh).await.expect("answer").answers.len(), 1);
    let metrics = shared.metrics.encode();
    assert!(metrics.contains("reason=\"tcp_connection_limit\""), "{metrics}");
    assert!(metrics.contains("reason=\"tcp_idle_timeout\""), "{metrics}");
    drop(dns);
}

#[tokio::test]
async fn hostile_packets_get_formerr_or_nothing_and_others_are_still_answered() {
    let dns = start(8, Duration::from_secs(2));
    let (server, _shared) = (dns.address, dns.shared.clone());
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind");
    let mut header = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00];
    let hostile: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 5],
        // A question whose name is a compression pointer to itself.
        [header.clone(), vec![0xc0, 0x0c, 0, 1, 0, 1]].concat(),
        // Huge counts with no records behind them.
        vec![0x12, 0x34, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        // A label longer than 63 bytes.
        [header.clone(), vec![64], vec![b'a'; 64], vec![0, 0, 1, 0, 1]].concat(),
        // 4 kB of noise after a valid header.
        [header.clone(), vec![0x3f; 4000]].concat(),
    ];
    for packet in &hostile {
        socket.send_to(packet, server).await.expect("send");
        let mut buffer = vec![0u8; 4096];
        if let Ok(Ok((len, _))) = tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buffer)).await
        {
            let answer = Message::from_vec(&buffer[..len]).expect("the server's own answer decodes");
            assert_eq!(answer.metadata.response_code, ResponseCode::FormErr, "{packet:?}");
        }
    }
    // Truncated header over TCP, then a stalled frame: the connection ends, nothing hangs.
    let mut stream = TcpStream::connect(server).await.expect("connect");
    stream.write_all(&[0x00, 0x30, 0x12]).await.expect("write");
    drop(stream);
    header[5] = 1;
    assert_eq!(udp_soa(server).await.answers.len(), 1, "still answering");
    drop(dns);
}

/// With response rate limiting on, a flood from one /24 gets its rate (plus every
/// second limited answer as an empty TC answer, so a real client moves to TCP), TCP
/// still answers it, and a client in another subnet is not affected.
#[tokio::test]
async fn rate_limiting_caps_one_subnet_and_spares_others() {
    let limit = RateLimitConfig {
        responses_per_second: 20,
        slip: 2,
    };
    let dns = start_limited(4, Duration::from_secs(2), Some(limit));
    let (server, shared) = (dns.address, dns.shared.clone());
    let flooder = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind");
    flooder.connect(server).await.expect("connect");
    let sent = 200u32;
    for _ in 0..sent {
        flooder.send(&soa_query()).await.expect("send");
    }
    let (mut full, mut truncated) = (0u32, 0u32);
    let mut buffer = vec![0u8; 4096];
    while let Ok(Ok(len)) = tokio::time::timeout(Duration::from_millis(500), flooder.recv(&mut buffer)).await {
        let message = Message::from_vec(&buffer[..len]).expect("decodes");
        if message.metadata.truncation {
            assert!(message.answers.is_empty() && message.queries.len() == 1, "{message}");
            truncated += 1;
        } else {
            assert_eq!(message.answers.len(), 1, "{message}");
            full += 1;
        }
    }
    println!("{sent} queries from one subnet: {full} answers, {truncated} truncated, the rest dropped");
    // 20 tokens, plus the few that refill while the burst is read (well under a second).
    assert!((20..=40).contains(&full), "{full} full answers");
    let limited = sent - full;
    assert!(
        truncated.abs_diff(limited / 2) <= 1,
        "{truncated} truncated of {limited} limited"
    );
    // Another /24 (127.0.1.0/24) gets its own bucket.
    let neighbour = UdpSocket::bind((Ipv4Addr::new(127, 0, 1, 1), 0))
        .await
        .expect("bind 127.0.1.1");
    let answer = udp_soa_from(&neighbour, server)
        .await
        .expect("an answer for another subnet");
    assert!(!answer.metadata.truncation && answer.answers.len() == 1);
    // TCP is never limited.
    let mut stream = TcpStream::connect(server).await.expect("connect");
    for _ in 0..30 {
        assert_eq!(tcp_soa(&mut stream).await.expect("TCP answer").answers.len(), 1);
    }
    let metrics = shared.metrics.encode();
    assert!(metrics.contains("reason=\"rate_limit\""), "{metrics}");
    drop(dns);
}

/// Bursts from many clients at once are received and answered in batches
/// (`recvmmsg`/`sendmmsg`): every query gets exactly one answer, with its own ID, sent to
/// the socket that asked.
#[tokio::test]
async fn bursts_from_many_clients_are_each_answered_to_their_sender() {
    let dns = start(4, Duration::from_secs(2));
    let (server, _shared) = (dns.address, dns.shared.clone());
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind"));
    }
    const PER_CLIENT: u16 = 20;
    // All queries first, so that they queue and the server takes them many at a time.
    for (c, client) in clients.iter().enumerate() {
        for q in 0..PER_CLIENT {
            let mut query = soa_query();
            let id = u16::try_from(c).expect("small") * 1000 + q;
            query[..2].copy_from_slice(&id.to_be_bytes());
            client.send_to(&query, server).await.expect("send");
        }
    }
    for (c, client) in clients.iter().enumerate() {
        let mut ids = Vec::new();
        let mut buffer = vec![0u8; 4096];
        while let Ok(Ok((len, from))) =
            tokio::time::timeout(Duration::from_millis(500), client.recv_from(&mut buffer)).await
        {
            assert_eq!(from, server);
            let answer = Message::from_vec(&buffer[..len]).expect("decodes");
            assert_eq!(answer.answers.len(), 1, "{answer}");
            ids.push(answer.metadata.id);
        }
        ids.sort_unstable();
        let first = u16::try_from(c).expect("small") * 1000;
        assert_eq!(ids, (first..first + PER_CLIENT).collect::<Vec<_>>(), "client {c}");
    }
    drop(dns);
}
