//! Helpers of the control socket and metrics tests: a daemon with both endpoints on private
//! addresses (control socket in the test's directory, metrics on an ephemeral loopback port,
//! found through the `status` request), requests, scrapes over real TCP, and frames to send.
//!
//! Every wait has a deadline ([`DEADLINE`]); polling waits only stop hung tests and assert on
//! values, never on timing.

#![allow(dead_code)] // each test file uses a different subset

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vhost_user_net::control::client::ControlClient;
use vhost_user_net::control::protocol::{Request, Response};
use vif_core::offload::VirtioNetHdr;
use vmm_integration::guest::{GuestConfig, VirtualGuest};
use vmm_integration::launcher::DaemonHandle;

use crate::daemon_support::{start, Scratch, DEADLINE};

/// A running daemon with its control socket and metrics address.
pub struct Running {
    pub handle: DaemonHandle,
    pub control: PathBuf,
    pub metrics: SocketAddr,
}

/// The daemon's private endpoints, as a config-file prefix.
pub fn services(scratch: &Scratch) -> String {
    format!(
        "[metrics]\nlisten = \"127.0.0.1:0\"\n\n[control]\nsocket = \"{}\"\n\n",
        scratch.join("control.sock").display()
    )
}

/// A `[[vif]]` table on segment `lab`, socket `<id>.sock` in the config's directory.
pub fn vif_table(id: &str, mac_last: u8, extra: &str) -> String {
    format!(
        "[[vif]]\nid = \"{id}\"\nmac = \"52:54:00:00:00:{mac_last:02x}\"\nsocket = \"{id}.sock\"\n\
         uplink = {{ type = \"local\", segment = \"lab\" }}\n{extra}\n"
    )
}

/// Starts the daemon on `vifs` (config text of `[[vif]]` tables) and waits for every socket.
pub fn start_daemon(scratch: &Scratch, vifs: &str, ids: &[&str]) -> Running {
    let config = scratch.write("vif.toml", &format!("{}{vifs}", services(scratch)));
    let control = scratch.join("control.sock");
    let sockets: Vec<PathBuf> = ids
        .iter()
        .map(|id| scratch.join(&format!("{id}.sock")))
        .chain([control.clone()])
        .collect();
    let socket_refs: Vec<&Path> = sockets.iter().map(PathBuf::as_path).collect();
    let handle = start(scratch, scratch.daemon().config(&config), &socket_refs);
    let status = request(&control, &Request::Status {});
    let addr = status
        .result
        .as_ref()
        .and_then(|r| r.get("metrics_listen"))
        .and_then(|a| a.as_str())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in {status:?}\n{}", scratch.log()));
    Running {
        handle,
        control,
        metrics: addr,
    }
}

/// One request on a fresh connection.
pub fn request(control: &Path, request: &Request) -> Response {
    let mut client = ControlClient::connect(control, DEADLINE).expect("connect to control");
    client.request(request).expect("control response")
}

/// Sends `request` and returns its result, failing the test on an error response.
pub fn ok(control: &Path, req: &Request) -> serde_json::Value {
    let response = request(control, req);
    assert!(response.ok, "{req:?} failed: {response:?}");
    response.result.unwrap_or_default()
}

/// `GET path` over a new TCP connection: (status line, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect_timeout(&addr, DEADLINE).expect("connect to metrics");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {response:?}"));
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

/// The exposition text of one scrape.
pub fn scrape(addr: SocketAddr) -> String {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    body
}

/// The value of the sample `name` whose labels include every pair of `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            let series = line.rsplit_once(' ').map_or("", |(s, _)| s);
            let series_name = series.split('{').next().unwrap_or_default();
            series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|line| line.rsplit_once(' '))
        .and_then(|(_, value)| value.parse().ok())
}

/// Scrapes until `check` accepts the text, or fails with the last text at [`DEADLINE`].
/// Counters are published by the datapath once per batch, after the frames move, so a value
/// may trail the traffic the test just saw by one batch.
pub fn scrape_until(addr: SocketAddr, what: &str, check: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let text = scrape(addr);
        if check(&text) {
            return text;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "metrics never showed {what}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn guest_config() -> GuestConfig {
    GuestConfig {
        reply_timeout: DEADLINE,
        op_timeout: DEADLINE,
        ..GuestConfig::default()
    }
}

/// A guest on `socket` with receive buffers posted.
pub fn guest(socket: &Path, log: impl Fn() -> String) -> VirtualGuest {
    let mut guest = VirtualGuest::connect(socket, guest_config())
        .unwrap_or_else(|e| panic!("connect {}: {e}\n{}", socket.display(), log()));
    guest.post_rx_buffers(0, 64, 2048).expect("post rx buffers");
    guest
}

/// A 60-byte broadcast ARP request (RFC 826) from `mac_last`, built field by field.
pub fn arp_request(mac_last: u8, target_ip_last: u8) -> Vec<u8> {
    let mac = [0x52, 0x54, 0x00, 0x00, 0x00, mac_last];
    let mut frame = Vec::with_capacity(60);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&[0x08, 0x06]);
    frame.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&[192, 0, 2, mac_last]);
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&[192, 0, 2, target_ip_last]);
    frame.resize(60, 0);
    frame
}

/// Sends `frame` from `from` and expects exactly it at `to`.
pub fn exchange(
    from: &mut VirtualGuest,
    to: &mut VirtualGuest,
    frame: &[u8],
    log: impl Fn() -> String,
) {
    from.send(0, &VirtioNetHdr::default(), frame)
        .unwrap_or_else(|e| panic!("send: {e}\n{}", log()));
    let (_, received) = to
        .recv_timeout(0, DEADLINE)
        .unwrap_or_else(|e| panic!("receive: {e}\n{}", log()));
    assert_eq!(received, frame);
}
