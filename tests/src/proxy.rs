//! A TCP proxy between Kafka clients and the host that understands just enough of the protocol
//! (frame sizes, request headers, response correlation ids) to inject the faults a network
//! causes: a response lost after the request took effect, or a client whose packets stop
//! arriving (a member that stops heartbeating without leaving).
//!
//! Point the host's `advertised_kafka_addr` at the proxy, so clients reach the broker through it
//! after bootstrapping too.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Rules {
    /// Drop the connection instead of delivering the next response to a request with this API
    /// key (the request itself went through and took effect).
    lose_response_of: Option<i16>,
    /// Client ids whose traffic is swallowed in both directions (connections stay open).
    blackholed: Vec<String>,
}

pub struct Proxy {
    pub addr: SocketAddr,
    upstream: Arc<Mutex<Option<SocketAddr>>>,
    rules: Arc<Mutex<Rules>>,
    lost: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Proxy {
    /// A proxy to `upstream`, listening on `addr` ("127.0.0.1:0" for any port).
    pub fn start(addr: &str, upstream: SocketAddr) -> Proxy {
        let proxy = Proxy::listen(addr);
        proxy.forward_to(upstream);
        proxy
    }

    /// A proxy listening on `addr` that forwards nowhere yet: bind it first so the host can
    /// advertise `proxy.addr`, then start the host and call `forward_to`. (Picking a free port
    /// and binding it later races with every other process on the machine.) Connections
    /// accepted before `forward_to` are closed.
    pub fn listen(addr: &str) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let listener = runtime.block_on(TcpListener::bind(addr)).expect("proxy bind");
        let addr = listener.local_addr().unwrap();
        let upstream = Arc::new(Mutex::new(None::<SocketAddr>));
        let rules = Arc::new(Mutex::new(Rules::default()));
        let lost = Arc::new(AtomicUsize::new(0));
        let (u, r, l) = (upstream.clone(), rules.clone(), lost.clone());
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Some(upstream) = *u.lock() else { continue };
                let Ok(server) = TcpStream::connect(upstream).await else { continue };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                tokio::spawn(relay(client, server, r.clone(), l.clone()));
            }
        });
        Proxy { addr, upstream, rules, lost, runtime: Some(runtime) }
    }

    /// Where accepted connections go from now on.
    pub fn forward_to(&self, upstream: SocketAddr) {
        *self.upstream.lock() = Some(upstream);
    }

    /// Lose the next response to an `api_key` request: the connection drops after the host acted
    /// on the request, before the client hears about it.
    pub fn lose_next_response(&self, api_key: i16) {
        self.rules.lock().lose_response_of = Some(api_key);
    }

    /// How many responses were lost so far.
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::Relaxed)
    }

    /// Swallow all traffic of connections whose requests carry `client_id`.
    pub fn blackhole(&self, client_id: &str) {
        self.rules.lock().blackholed.push(client_id.to_string());
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn read_frame(s: &mut tokio::net::tcp::OwnedReadHalf) -> Option<Vec<u8>> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size).await.ok()?;
    let n = i32::from_be_bytes(size);
    if !(0..=(256 << 20)).contains(&n) {
        return None;
    }
    let mut frame = vec![0u8; 4 + n as usize];
    frame[..4].copy_from_slice(&size);
    s.read_exact(&mut frame[4..]).await.ok()?;
    Some(frame)
}

/// The request header's api key, correlation id and client id (header v1+; v0 has no client id).
fn request_header(frame: &[u8]) -> Option<(i16, i32, Option<String>)> {
    let b = frame.get(4..)?;
    let key = i16::from_be_bytes(b.get(0..2)?.try_into().ok()?);
    let correlation = i32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
    let len = i16::from_be_bytes(b.get(8..10)?.try_into().ok()?);
    let client =
        (len >= 0).then(|| b.get(10..10 + len as usize).map(|s| String::from_utf8_lossy(s).into_owned()));
    Some((key, correlation, client.flatten()))
}

async fn relay(client: TcpStream, server: TcpStream, rules: Arc<Mutex<Rules>>, lost: Arc<AtomicUsize>) {
    let (mut c_rd, mut c_wr) = client.into_split();
    let (mut s_rd, mut s_wr) = server.into_split();
    let pending: Arc<Mutex<HashMap<i32, i16>>> = Arc::default();
    let client_id: Arc<Mutex<Option<String>>> = Arc::default();
    let blackholed = {
        let (rules, client_id) = (rules.clone(), client_id.clone());
        move || {
            let id = client_id.lock().clone();
            id.is_some_and(|id| rules.lock().blackholed.contains(&id))
        }
    };
    let upstream = {
        let (pending, client_id, blackholed) = (pending.clone(), client_id.clone(), blackholed.clone());
        async move {
            while let Some(frame) = read_frame(&mut c_rd).await {
                if let Some((key, correlation, id)) = request_header(&frame) {
                    pending.lock().insert(correlation, key);
                    if id.is_some() {
                        *client_id.lock() = id;
                    }
                }
                if blackholed() {
                    continue;
                }
                if s_wr.write_all(&frame).await.is_err() {
                    break;
                }
            }
        }
    };
    let downstream = async move {
        while let Some(frame) = read_frame(&mut s_rd).await {
            let correlation = frame.get(4..8).map_or(-1, |b| i32::from_be_bytes(b.try_into().unwrap()));
            let key = pending.lock().remove(&correlation);
            if blackholed() {
                continue;
            }
            {
                let mut rules = rules.lock();
                if key.is_some() && rules.lose_response_of == key {
                    rules.lose_response_of = None;
                    lost.fetch_add(1, Ordering::Relaxed);
                    return; // both halves drop: the connection closes without the response
                }
            }
            if c_wr.write_all(&frame).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}
