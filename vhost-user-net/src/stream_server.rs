//! Small request/response servers on the daemon's `event-manager`: the control socket (Unix,
//! JSON lines) and the metrics endpoint (TCP, HTTP/1.1) share this connection handling.
//!
//! Everything runs in the main thread, on non-blocking sockets, so a client can never block the
//! daemon, and every resource a client can make us hold is bounded:
//! - at most [`Limits::max_connections`] at once; past that a new connection is accepted and
//!   closed at once (leaving it in the backlog would let it fill);
//! - a request is at most [`Limits::max_request`] bytes; a client that sends more without
//!   completing one gets the protocol's "too large" answer and is closed;
//! - one response is outstanding per connection: while it is being written the connection is
//!   not read, so a client that pipelines requests and never reads cannot grow our buffers;
//! - a connection idle (no byte read or written) for [`Limits::idle_timeout`] is closed, checked
//!   on a one-second timerfd tick. A slowloris client holds one slot for that long, no more.
//!
//! Epoll is level-triggered (the event-manager default): a connection whose input is not
//! drained is simply dispatched again. Every fd is removed from the event manager before it is
//! closed, since the manager dispatches by fd number and a reused number must not reach us.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::timerfd::TimerFd;

/// How often idle connections are looked for.
const SWEEP_TICK: Duration = Duration::from_secs(1);
/// Bytes read per `read` call.
const READ_CHUNK: usize = 16 * 1024;

/// What one server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_request: usize,
    pub idle_timeout: Duration,
}

/// What a protocol made of the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// No complete request yet.
    NeedMore,
    /// One request handled: `consumed` bytes are done with and its response was appended;
    /// `close` closes the connection once the response is written.
    Request { consumed: usize, close: bool },
}

/// A request/response protocol.
pub trait Protocol {
    /// Handles the first complete request at the start of `input`, appending its response to
    /// `output`.
    fn handle(&mut self, input: &[u8], output: &mut Vec<u8>) -> Handled;

    /// `input` reached the request limit without a complete request: append a last response
    /// (the connection is closed after it).
    fn too_large(&mut self, limit: usize, output: &mut Vec<u8>);
}

/// A listening socket of a [`StreamServer`].
pub trait Acceptor: AsRawFd {
    type Stream: Read + Write + AsRawFd;

    /// Accepts one pending connection, non-blocking (`WouldBlock` when none is pending).
    fn accept_one(&self) -> io::Result<Self::Stream>;

    /// Whether this peer may talk to us; `Err` says why not (logged).
    fn admit(&self, _stream: &Self::Stream) -> Result<(), String> {
        Ok(())
    }
}

impl Acceptor for TcpListener {
    type Stream = TcpStream;

    fn accept_one(&self) -> io::Result<TcpStream> {
        let (stream, _) = self.accept()?;
        stream.set_nonblocking(true)?;
        // Responses are written whole; no point delaying the last segment.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

impl Acceptor for UnixListener {
    type Stream = UnixStream;

    fn accept_one(&self) -> io::Result<UnixStream> {
        let (stream, _) = self.accept()?;
        stream.set_nonblocking(true)?;
        Ok(stream)
    }
}

struct Conn<S> {
    stream: S,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    close_after_write: bool,
    /// The peer shut its sending side: answer what is complete, then close.
    eof: bool,
    last_activity: Instant,
    interest: EventSet,
}

/// A server: its listener, its connections and an idle sweep timer, as one subscriber.
pub struct StreamServer<A: Acceptor, P: Protocol> {
    name: &'static str,
    acceptor: A,
    protocol: P,
    limits: Limits,
    sweep: TimerFd,
    conns: HashMap<RawFd, Conn<A::Stream>>,
    /// Connections refused since the last log line, so a flood logs once per sweep.
    refused: u64,
}

impl<A: Acceptor, P: Protocol> StreamServer<A, P> {
    /// A server named `name` (for logs) on a listener that must already be non-blocking.
    pub fn new(name: &'static str, acceptor: A, protocol: P, limits: Limits) -> io::Result<Self> {
        let mut sweep = TimerFd::new()?;
        sweep.reset(SWEEP_TICK, Some(SWEEP_TICK))?;
        Ok(StreamServer {
            name,
            acceptor,
            protocol,
            limits,
            sweep,
            conns: HashMap::new(),
            refused: 0,
        })
    }

    pub fn protocol_mut(&mut self) -> &mut P {
        &mut self.protocol
    }

    fn accept_all(&mut self, ops: &mut EventOps) {
        loop {
            let stream = match self.acceptor.accept_one() {
                Ok(stream) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ECONNABORTED and friends concern one client; EMFILE leaves the connection in
                // the backlog and the listener readable, so stop for this round.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    log::warn!("{}: accept failed: {e}", self.name);
                    return;
                }
            };
            if self.conns.len() >= self.limits.max_connections {
                self.refused = self.refused.saturating_add(1);
                continue; // dropped: closed at once
            }
            if let Err(reason) = self.acceptor.admit(&stream) {
                log::warn!("{}: connection refused: {reason}", self.name);
                continue;
            }
            let fd = stream.as_raw_fd();
            if let Err(e) = ops.add(Events::new(&stream, EventSet::IN)) {
                log::warn!("{}: cannot watch a connection: {e:?}", self.name);
                continue;
            }
            self.conns.insert(
                fd,
                Conn {
                    stream,
                    input: Vec::new(),
                    output: Vec::new(),
                    written: 0,
                    close_after_write: false,
                    eof: false,
                    last_activity: Instant::now(),
                    interest: EventSet::IN,
                },
            );
        }
    }

    fn close(&mut self, fd: RawFd, ops: &mut EventOps) {
        if let Some(conn) = self.conns.remove(&fd) {
            // Remove before the fd is closed (dropped below): see the module docs.
            let _ = ops.remove(Events::new(&conn.stream, conn.interest));
        }
    }

    fn sweep_idle(&mut self, ops: &mut EventOps) {
        if let Err(e) = self.sweep.wait() {
            log::warn!("{}: sweep timer read failed: {e}", self.name);
        }
        if self.refused > 0 {
            log::warn!(
                "{}: refused {} connection(s): {} already open",
                self.name,
                self.refused,
                self.limits.max_connections
            );
            self.refused = 0;
        }
        let now = Instant::now();
        let idle: Vec<RawFd> = self
            .conns
            .iter()
            .filter(|(_, c)| now.duration_since(c.last_activity) >= self.limits.idle_timeout)
            .map(|(fd, _)| *fd)
            .collect();
        for fd in idle {
            log::debug!("{}: closing an idle connection", self.name);
            self.close(fd, ops);
        }
    }

    /// Moves one connection forward; `false` closes it.
    fn serve(&mut self, fd: RawFd, events: EventSet, ops: &mut EventOps) -> bool {
        let Some(conn) = self.conns.get_mut(&fd) else {
            return true;
        };
        if events.contains(EventSet::ERROR) {
            return false;
        }
        if !flush(conn) {
            return false;
        }
        if conn.output.is_empty() {
            if conn.close_after_write {
                return false;
            }
            if !read_input(conn, self.limits.max_request) {
                return false;
            }
            // One response outstanding at a time: the next request is handled once this one's
            // response is written (here if the socket takes it at once, else on EPOLLOUT).
            while !conn.input.is_empty() && conn.output.is_empty() && !conn.close_after_write {
                match self.protocol.handle(&conn.input, &mut conn.output) {
                    Handled::NeedMore if conn.input.len() >= self.limits.max_request => {
                        self.protocol
                            .too_large(self.limits.max_request, &mut conn.output);
                        conn.input.clear();
                        conn.close_after_write = true;
                    }
                    // An incomplete request from a peer that will send nothing more.
                    Handled::NeedMore if conn.eof => return false,
                    Handled::NeedMore => break,
                    Handled::Request { consumed, close } => {
                        conn.input.drain(..consumed.min(conn.input.len()));
                        // A protocol that consumed nothing would be asked the same forever.
                        conn.close_after_write |= close || consumed == 0;
                    }
                }
                if !flush(conn) {
                    return false;
                }
            }
            let finished = conn.close_after_write || (conn.eof && conn.input.is_empty());
            if conn.output.is_empty() && finished {
                return false;
            }
        }
        // Write interest only while a response is pending; otherwise read.
        let wanted = if conn.output.is_empty() {
            EventSet::IN
        } else {
            EventSet::OUT
        };
        if wanted != conn.interest {
            if ops.modify(Events::new(&conn.stream, wanted)).is_err() {
                return false;
            }
            conn.interest = wanted;
        }
        true
    }
}

/// Writes pending output; `false` if the connection broke.
fn flush<S: Write>(conn: &mut Conn<S>) -> bool {
    while conn.written < conn.output.len() {
        let pending = conn.output.get(conn.written..).unwrap_or_default();
        match conn.stream.write(pending) {
            Ok(0) => return false,
            Ok(n) => {
                conn.written = conn.written.saturating_add(n);
                conn.last_activity = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    conn.output.clear();
    conn.written = 0;
    true
}

/// Reads what is available, up to `limit` buffered bytes; `false` if the connection broke.
fn read_input<S: Read>(conn: &mut Conn<S>, limit: usize) -> bool {
    let mut chunk = [0u8; READ_CHUNK];
    while !conn.eof && conn.input.len() < limit {
        let room = (limit - conn.input.len()).min(chunk.len());
        let Some(buf) = chunk.get_mut(..room) else {
            return false;
        };
        match conn.stream.read(buf) {
            Ok(0) => conn.eof = true,
            Ok(n) => {
                conn.input
                    .extend_from_slice(buf.get(..n).unwrap_or_default());
                conn.last_activity = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    true
}

impl<A: Acceptor, P: Protocol> MutEventSubscriber for StreamServer<A, P> {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.acceptor.as_raw_fd() {
            self.accept_all(ops);
        } else if fd == self.sweep.as_raw_fd() {
            self.sweep_idle(ops);
        } else if !self.serve(fd, events.event_set(), ops) {
            self.close(fd, ops);
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.acceptor, EventSet::IN)) {
            log::error!(
                "{}: cannot watch the listener: {e:?}; not serving",
                self.name
            );
        }
        if let Err(e) = ops.add(Events::new(&self.sweep, EventSet::IN)) {
            log::error!(
                "{}: cannot watch the sweep timer: {e:?}; idle clients are kept",
                self.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixStream;

    use event_manager::{EventManager, SubscriberOps};

    use super::*;

    /// Echoes each line back upper-cased; "bye" closes.
    struct Upper;

    impl Protocol for Upper {
        fn handle(&mut self, input: &[u8], output: &mut Vec<u8>) -> Handled {
            let Some(end) = input.iter().position(|&b| b == b'\n') else {
                return Handled::NeedMore;
            };
            let line = &input[..end];
            output.extend(line.iter().map(u8::to_ascii_uppercase));
            output.push(b'\n');
            Handled::Request {
                consumed: end + 1,
                close: line == b"bye",
            }
        }

        fn too_large(&mut self, limit: usize, output: &mut Vec<u8>) {
            output.extend_from_slice(format!("TOO LARGE {limit}\n").as_bytes());
        }
    }

    fn server(limits: Limits) -> (tempfile_dir::Dir, EventManager<Box<dyn MutEventSubscriber>>) {
        let dir = tempfile_dir::Dir::new();
        let listener = UnixListener::bind(dir.path().join("s.sock")).unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut manager = EventManager::<Box<dyn MutEventSubscriber>>::new().unwrap();
        let server = StreamServer::new("test", listener, Upper, limits).unwrap();
        manager.add_subscriber(Box::new(server));
        (dir, manager)
    }

    /// A scratch directory removed on drop.
    mod tempfile_dir {
        pub struct Dir(vmm_sys_util::tempdir::TempDir);
        impl Dir {
            pub fn new() -> Dir {
                Dir(vmm_sys_util::tempdir::TempDir::new_with_prefix("/tmp/vif-stream-").unwrap())
            }
            pub fn path(&self) -> &std::path::Path {
                self.0.as_path()
            }
        }
    }

    const LIMITS: Limits = Limits {
        max_connections: 2,
        max_request: 64,
        idle_timeout: Duration::from_secs(30),
    };

    /// Runs the manager until `done` holds; the bound stops a hung test.
    fn pump(
        manager: &mut EventManager<Box<dyn MutEventSubscriber>>,
        mut done: impl FnMut() -> bool,
    ) {
        for _ in 0..1000 {
            if done() {
                return;
            }
            manager.run_with_timeout(100).unwrap();
        }
        panic!("no progress");
    }

    fn read_line(reader: &mut BufReader<UnixStream>) -> Option<String> {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Some(String::new()),
            Err(_) => None,
        }
    }

    #[test]
    fn pipelined_requests_are_answered_in_order_then_closed() {
        let (dir, mut manager) = server(LIMITS);
        let mut client = UnixStream::connect(dir.path().join("s.sock")).unwrap();
        client.write_all(b"one\ntwo\nbye\nignored\n").unwrap();
        client.set_nonblocking(true).unwrap();
        let mut reader = BufReader::new(client);
        let mut got = Vec::new();
        let mut closed = false;
        pump(&mut manager, || {
            match read_line(&mut reader) {
                Some(line) if !line.is_empty() => got.push(line),
                Some(_) => {}
                None => closed = true,
            }
            closed
        });
        assert_eq!(got, ["ONE\n", "TWO\n", "BYE\n"]);
    }

    #[test]
    fn oversized_request_gets_a_last_answer() {
        let (dir, mut manager) = server(LIMITS);
        let mut client = UnixStream::connect(dir.path().join("s.sock")).unwrap();
        client.write_all(&[b'x'; 100]).unwrap();
        client.set_nonblocking(true).unwrap();
        let mut reader = BufReader::new(client);
        let mut got = String::new();
        let mut closed = false;
        pump(&mut manager, || {
            match read_line(&mut reader) {
                Some(line) => got.push_str(&line),
                None => closed = true,
            }
            closed
        });
        assert_eq!(got, "TOO LARGE 64\n");
    }

    #[test]
    fn connections_past_the_limit_are_closed() {
        let (dir, mut manager) = server(LIMITS);
        let path = dir.path().join("s.sock");
        let held: Vec<UnixStream> = (0..2)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        manager.run_with_timeout(100).unwrap();
        let extra = UnixStream::connect(&path).unwrap();
        extra.set_nonblocking(true).unwrap();
        let mut reader = BufReader::new(extra);
        let mut closed = false;
        pump(&mut manager, || {
            closed = read_line(&mut reader).is_none();
            closed
        });
        // The held ones still work.
        let mut first = BufReader::new(held.into_iter().next().unwrap());
        first.get_mut().write_all(b"ok\n").unwrap();
        first.get_mut().set_nonblocking(true).unwrap();
        let mut got = String::new();
        pump(&mut manager, || {
            if let Some(line) = read_line(&mut first) {
                got.push_str(&line);
            }
            got.ends_with('\n')
        });
        assert_eq!(got, "OK\n");
    }

    #[test]
    fn half_closed_peer_gets_its_answer() {
        let (dir, mut manager) = server(LIMITS);
        let mut client = UnixStream::connect(dir.path().join("s.sock")).unwrap();
        client.write_all(b"last\n").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        client.set_nonblocking(true).unwrap();
        let mut reader = BufReader::new(client);
        let mut got = String::new();
        let mut closed = false;
        pump(&mut manager, || {
            match read_line(&mut reader) {
                Some(line) => got.push_str(&line),
                None => closed = true,
            }
            closed
        });
        assert_eq!(got, "LAST\n");
    }
}
