//! A TCP forwarder on a port of its own, in front of a shared server, that a
//! test closes and opens again: closed, the port refuses connections and the
//! connections open through it are cut; open again, it listens on the same
//! port. A server outage for one test's clients, without stopping the server
//! other tests use.
//!
//! It also counts the connections it accepted and the HTTP/1.1 requests it
//! forwarded (request lines seen from clients), for tests that check how
//! often a client called.
//!
//! # Examples
//!
//! ```no_run
//! use outbox_tests::registry::schema_registry_url;
//! use outbox_tests::tcp_gate::TcpGate;
//!
//! let gate = TcpGate::in_front_of(&schema_registry_url());
//! let url = gate.url(); // http://127.0.0.1:<gate's port>/apis/ccompat/v7
//! gate.close(); // connections to the gate are refused, open ones cut
//! gate.open(); // listening again on the same port
//! println!("{} requests through {url}", gate.requests());
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long [`TcpGate::open`] and [`TcpGate::close`] wait for the gate.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(10);

/// What an HTTP/1.1 request line ends with.
const REQUEST_LINE_END: &[u8] = b" HTTP/1.1\r\n";

/// A forwarder in front of one server; it stops when dropped.
pub struct TcpGate {
    addr: SocketAddr,
    url: String,
    state: watch::Sender<State>,
    counts: Arc<Counts>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Closed,
    Stopped,
}

#[derive(Default)]
struct Counts {
    connections: AtomicUsize,
    requests: AtomicUsize,
    listening: AtomicBool,
}

impl TcpGate {
    /// A gate on `127.0.0.1` (a free port) forwarding to `target`
    /// (`host:port`), open.
    ///
    /// # Panics
    ///
    /// When no port can be bound.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let gate = outbox_tests::tcp_gate::TcpGate::start("127.0.0.1:58086");
    /// assert!(gate.addr().ip().is_loopback());
    /// ```
    pub fn start(target: &str) -> TcpGate {
        Self::forwarding(target, None)
    }

    /// A gate in front of the server of `url` (`scheme://host:port/path`);
    /// [`url`](Self::url) is `url` with the gate's address instead.
    ///
    /// # Panics
    ///
    /// When `url` has no `host:port`, or no port can be bound.
    pub fn in_front_of(url: &str) -> TcpGate {
        let (scheme, rest) = url
            .split_once("://")
            .unwrap_or_else(|| panic!("`{url}` is not a URL"));
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        assert!(
            authority.contains(':'),
            "`{url}` names no port: give host:port"
        );
        Self::forwarding(authority, Some((scheme.to_owned(), path.to_owned())))
    }

    fn forwarding(target: &str, url: Option<(String, String)>) -> TcpGate {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let addr = probe.local_addr().expect("the gate's address");
        drop(probe);
        let url = match url {
            Some((scheme, path)) => format!("{scheme}://{addr}{path}"),
            None => format!("tcp://{addr}"),
        };
        let (state, receiver) = watch::channel(State::Open);
        let counts = Arc::new(Counts::default());
        let thread = {
            let (target, counts) = (target.to_owned(), counts.clone());
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the gate's runtime")
                    .block_on(serve(addr, target, receiver, counts));
            })
        };
        let gate = TcpGate {
            addr,
            url,
            state,
            counts,
            thread: Some(thread),
        };
        gate.wait_listening(true);
        gate
    }

    /// The gate's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL given to [`in_front_of`](Self::in_front_of) with the gate's
    /// address (`tcp://<addr>` for [`start`](Self::start)).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops listening and cuts every connection open through the gate;
    /// returns once the port refuses connections.
    ///
    /// # Panics
    ///
    /// When the gate does not close in time.
    pub fn close(&self) {
        self.state.send_replace(State::Closed);
        self.wait_listening(false);
    }

    /// Listens again on the same port; returns once it accepts connections.
    ///
    /// # Panics
    ///
    /// When the port cannot be bound again in time.
    pub fn open(&self) {
        self.state.send_replace(State::Open);
        self.wait_listening(true);
    }

    /// The connections accepted so far.
    pub fn connections(&self) -> usize {
        self.counts.connections.load(Ordering::SeqCst)
    }

    /// The HTTP/1.1 requests clients sent through the gate so far.
    pub fn requests(&self) -> usize {
        self.counts.requests.load(Ordering::SeqCst)
    }

    fn wait_listening(&self, listening: bool) {
        let deadline = Instant::now() + SWITCH_TIMEOUT;
        while self.counts.listening.load(Ordering::SeqCst) != listening {
            assert!(
                Instant::now() < deadline,
                "the TCP gate on {} did not {} within {SWITCH_TIMEOUT:?}",
                self.addr,
                if listening { "open" } else { "close" }
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for TcpGate {
    fn drop(&mut self) {
        self.state.send_replace(State::Stopped);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The gate's loop: listens while open, forwarding each connection.
async fn serve(
    addr: SocketAddr,
    target: String,
    mut state: watch::Receiver<State>,
    counts: Arc<Counts>,
) {
    let mut connections = JoinSet::new();
    loop {
        let now = *state.borrow_and_update();
        match now {
            State::Stopped => {
                connections.shutdown().await;
                return;
            }
            State::Closed => {
                connections.shutdown().await;
                counts.listening.store(false, Ordering::SeqCst);
                if state.changed().await.is_err() {
                    return;
                }
            }
            State::Open => {
                let listener = bind(addr).await;
                counts.listening.store(true, Ordering::SeqCst);
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            if let Ok((client, _)) = accepted {
                                counts.connections.fetch_add(1, Ordering::SeqCst);
                                connections.spawn(forward(client, target.clone(), counts.clone()));
                            }
                        }
                        Some(_) = connections.join_next(), if !connections.is_empty() => {}
                        changed = state.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            break;
                        }
                    }
                }
                // The listener closes here: the port refuses connections.
            }
        }
    }
}

/// Binds `addr` again (address reuse: connections of the last opening may
/// still be in TIME_WAIT); retries while the port is busy.
async fn bind(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + SWITCH_TIMEOUT;
    loop {
        let bound = TcpSocket::new_v4().and_then(|socket| {
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(128)
        });
        match bound {
            Ok(listener) => return listener,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "the TCP gate cannot listen on {addr} again: {error}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Copies both ways until either side closes; counts the request lines the
/// client sends.
async fn forward(client: TcpStream, target: String, counts: Arc<Counts>) {
    let Ok(server) = TcpStream::connect(&target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        // The end of the previous read, for a request line cut in two.
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            carry.extend_from_slice(&buf[..n]);
            let found = carry
                .windows(REQUEST_LINE_END.len())
                .filter(|w| *w == REQUEST_LINE_END)
                .count();
            counts.requests.fetch_add(found, Ordering::SeqCst);
            let keep = carry.len().min(REQUEST_LINE_END.len() - 1);
            carry.drain(..carry.len() - keep);
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}
