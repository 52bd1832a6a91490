//! Packets per second through vif's vhost-user datapath, beside DPDK's own vhost-user backend
//! (`net_vhost`) on the same machine, the same cores and the same frontends.
//!
//! ```text
//! cargo bench --bench pps                       # everything: 5 runs x 5 s, 64 and 1500 B
//! cargo bench --bench pps -- --only g2g --sizes 64 --runs 3 --secs 5
//! cargo bench --bench pps -- --only consume --busy-poll
//! cargo bench --bench pps -- --only g2g --backends vif --acl 100   # also with 100 ACL rules
//! ```
//!
//! Scenarios (one queue pair everywhere; "Mpps" = frames/s / 10^6, frames without FCS):
//! - `g2g` (a, b): guest A → guest B, two `VirtualGuest`s driven by one polling thread on CPU 0
//!   ([`guests`]). Figure: packets B received per second. Backend on CPU 1: (a) vif, both VIFs
//!   on one local segment of an in-process daemon (`Daemon::start`, the code the binary runs);
//!   (b) DPDK `testpmd --vdev net_vhost0 --vdev net_vhost1 --forward-mode=io`.
//! - `g2g --acl N` (a'): (a) with guest A's VIF classifying every frame against an egress ACL of
//!   `N` random rules that never match and a final allow ([`acl`]); backend `vif-aclN`.
//! - `consume` (c): DPDK's virtio_user frontend (`testpmd --forward-mode=txonly`, CPU 0) floods
//!   one VIF; figure: the median of testpmd's per-second `Tx-pps` reports, i.e. the frames the
//!   backend took from the TX ring. Backend on CPU 1: vif (the VIF alone on its segment, so the
//!   frames are taken, switched to nobody and counted) or DPDK `net_vhost` in `rxonly`.
//!
//! Runs are interleaved (vif, DPDK, vif, ...) and each is set up afresh. Each run line records
//! the CPU the rest of the machine used during its window ([`host`]); the table gives the
//! median and min-max of the clean runs only (others at most `--quiet` CPUs, default 0.1),
//! since contention changes these figures several-fold. Before each run the bench waits up to
//! `--quiet-max` seconds for the machine to be that quiet. Without `--bench` (as `cargo test` runs it) it does a 0.2 s smoke run of (a)
//! and checks that frames arrive.

mod acl;
mod guests;
mod host;
mod testpmd;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vif::backend::config::DaemonConfig;
use vif::backend::daemon::Daemon;
use vif::core::stats::{DropReason, QueueCounters};

use guests::{Pair, MAC_A, MAC_B};
use host::{CpuSample, CpuUse};
use testpmd::{Launch, Role, Testpmd};

/// Frontends run here (the guests' polling thread, testpmd's virtio_user forwarding lcore)...
const FRONTEND_CPU: u32 = 0;
/// ...and backends here (vif's threads, testpmd's net_vhost forwarding lcore).
const BACKEND_CPU: u32 = 1;
/// EAL start, hugepage mapping and the vhost-user handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

const USAGE: &str = "\
usage: pps [--bench] [--only g2g,consume] [--backends vif,dpdk] [--sizes 64,1500] [--runs N]
           [--secs S] [--warmup S] [--busy-poll] [--no-pin] [--quiet CPUS] [--quiet-max S]
           [--acl RULES]";

#[derive(Debug, Clone)]
struct Options {
    bench: bool,
    g2g: bool,
    consume: bool,
    vif: bool,
    dpdk: bool,
    busy_poll: bool,
    pin: bool,
    sizes: Vec<usize>,
    runs: usize,
    secs: f64,
    warmup: f64,
    quiet: f64,
    quiet_max: f64,
    /// `--acl N`: also run (a) with an N-rule egress ACL on guest A's VIF.
    acl: Option<usize>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            bench: false,
            g2g: true,
            consume: true,
            vif: true,
            dpdk: true,
            busy_poll: false,
            pin: true,
            sizes: vec![64, 1500],
            runs: 5,
            secs: 5.0,
            warmup: 1.0,
            quiet: 0.1,
            quiet_max: 120.0,
            acl: None,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().cloned().ok_or(format!("{arg} needs a value"));
            let number = |text: String| -> Result<f64, String> {
                text.parse()
                    .map_err(|_| format!("{arg}: not a number: {text}"))
            };
            match arg.as_str() {
                "--bench" => o.bench = true,
                "--busy-poll" => o.busy_poll = true,
                "--no-pin" => o.pin = false,
                "--only" => {
                    let list = value()?;
                    o.g2g = list.split(',').any(|s| s == "g2g");
                    o.consume = list.split(',').any(|s| s == "consume");
                }
                "--backends" => {
                    let list = value()?;
                    o.vif = list.split(',').any(|s| s == "vif");
                    o.dpdk = list.split(',').any(|s| s == "dpdk");
                }
                "--sizes" => {
                    o.sizes = value()?
                        .split(',')
                        .map(|s| s.parse().map_err(|_| format!("--sizes: {s}")))
                        .collect::<Result<_, _>>()?;
                }
                "--runs" => o.runs = number(value()?)? as usize,
                "--secs" => o.secs = number(value()?)?,
                "--warmup" => o.warmup = number(value()?)?,
                "--quiet" => o.quiet = number(value()?)?,
                "--quiet-max" => o.quiet_max = number(value()?)?,
                "--acl" => o.acl = Some(number(value()?)? as usize),
                // libtest flags cargo may pass; nothing to filter here.
                other if other.starts_with("--") => {}
                _ => {}
            }
        }
        if o.sizes.iter().any(|&s| !(60..=1514).contains(&s)) {
            return Err("--sizes: frames are 60..=1514 bytes (MTU 1500, no FCS)".into());
        }
        Ok(o)
    }

    fn window(&self) -> Duration {
        Duration::from_secs_f64(self.secs)
    }

    fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup)
    }
}

/// One run's figure and its circumstances.
#[derive(Debug, Clone)]
struct Record {
    case: &'static str,
    backend: String,
    size: usize,
    mpps: f64,
    /// Who limited the run: drops, the other side's rate.
    detail: String,
    load1: f64,
    cpu: CpuUse,
    pinned: bool,
}

impl Record {
    fn print(&self) {
        println!(
            "run\t{}\t{}\t{}\t{:.3} Mpps\tothers {:.2} CPU\tours {:.2} CPU\tload1 {:.2}\t{}{}",
            self.case,
            self.backend,
            self.size,
            self.mpps,
            self.cpu.others,
            self.cpu.ours,
            self.load1,
            self.detail,
            if self.pinned { "" } else { "\tUNPINNED" },
        );
    }
}

/// A directory for one run's sockets and logs, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Result<Scratch, String> {
        // Under /tmp: socket paths must fit in sun_path.
        let path = PathBuf::from(format!("/tmp/vif-pps-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Scratch(path))
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A daemon serving `vifs` (id, MAC) on one local segment, sockets in `dir`; with
/// `acl_rules`, VIF `a` gets an egress ACL of that many rules ([`acl::table`]).
fn vif_daemon(
    dir: &Scratch,
    vifs: &[(&str, vif::core::mac::MacAddr)],
    acl_rules: Option<usize>,
) -> Result<Daemon, String> {
    let mut text = String::new();
    for (id, mac) in vifs {
        let acl = match acl_rules {
            Some(_) if *id == "a" => "acl = { egress = \"bench\" }\n",
            _ => "",
        };
        text.push_str(&format!(
            "[[vif]]\nid = \"{id}\"\nmac = \"{mac}\"\nsocket = \"{id}.sock\"\n\
             uplink = {{ type = \"local\", segment = \"bench\" }}\n{acl}\n"
        ));
    }
    if let Some(rules) = acl_rules {
        text.push_str(&acl::table("bench", rules));
    }
    let config = DaemonConfig::parse(&text, "pps bench", &dir.0).map_err(|e| e.to_string())?;
    Daemon::start(&config).map_err(|e| format!("daemon: {e}"))
}

/// Drops between two snapshots of a queue's counters, by reason ("reason=count ...").
fn drops(before: &QueueCounters, after: &QueueCounters) -> String {
    DropReason::ALL
        .iter()
        .filter_map(|&reason| {
            let n = after.drops(reason).saturating_sub(before.drops(reason));
            (n > 0).then(|| format!("{}={n}", reason.as_str()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn scripts() -> PathBuf {
    testpmd::scripts_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
}

fn testpmd(dir: &Scratch, name: &str, launch: Launch<'_>) -> Result<Testpmd, String> {
    let prefix = format!("vif-pps-{name}-{}", std::process::id());
    let log = dir.join(&format!("{name}.log"));
    let launch = Launch {
        prefix: &prefix,
        log: &log,
        ..launch
    };
    Testpmd::spawn(&scripts(), &launch).map_err(|e| e.to_string())
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Waits up to `o.quiet_max` for the others' CPU use to fall under `o.quiet`.
fn wait_quiet(o: &Options) {
    let ticks = host::clock_ticks();
    let deadline = Instant::now() + Duration::from_secs_f64(o.quiet_max);
    loop {
        let before = CpuSample::take(&[]);
        std::thread::sleep(Duration::from_secs(1));
        let others = before.until(&CpuSample::take(&[]), ticks).others;
        if others <= o.quiet || Instant::now() >= deadline {
            if others > o.quiet {
                eprintln!("pps: machine still busy ({others:.2} CPUs used by others); measuring");
            }
            return;
        }
        std::thread::sleep(Duration::from_secs(4));
    }
}

/// (a) guest A → guest B through two VIFs of vif's daemon; (a') with `acl_rules`.
fn g2g_vif(
    o: &Options,
    size: usize,
    busy_poll: bool,
    acl_rules: Option<usize>,
) -> Result<Record, String> {
    let dir = Scratch::new("g2g-vif")?;
    // Threads the daemon spawns inherit this thread's CPU: the backend's core.
    if o.pin {
        host::pin(host::current_tid().unwrap_or(0), BACKEND_CPU);
    }
    let daemon = vif_daemon(&dir, &[("a", MAC_A), ("b", MAC_B)], acl_rules)?;
    let backend = |id: &str| daemon.backend(id).ok_or(format!("no VIF {id}"));
    let (a, b) = (backend("a")?.clone(), backend("b")?.clone());
    a.set_busy_poll(busy_poll);
    b.set_busy_poll(busy_poll);
    let mut pair = Pair::connect(
        &dir.join("a.sock"),
        &dir.join("b.sock"),
        size,
        CONNECT_TIMEOUT,
    )
    .map_err(|e| format!("guests: {e}"))?;
    let pinned = o.pin && host::pin_process(FRONTEND_CPU, BACKEND_CPU);
    let result: Result<_, String> = (|| {
        pair.drive(o.warmup()).map_err(|e| e.to_string())?;
        let ticks = host::clock_ticks();
        let load1 = host::load1();
        let (a0, b0) = (a.stats().snapshot(), b.stats().snapshot());
        let cpu0 = CpuSample::take(&[]);
        let window = pair.drive(o.window()).map_err(|e| e.to_string())?;
        let cpu = cpu0.until(&CpuSample::take(&[]), ticks);
        let (a1, b1) = (a.stats().snapshot(), b.stats().snapshot());
        let taken = a1.tx.packets - a0.tx.packets;
        let delivered = b1.rx.packets - b0.rx.packets;
        let a_drops = drops(&a0.tx, &a1.tx);
        let b_drops = drops(&b0.rx, &b1.rx);
        Ok(Record {
            case: "g2g",
            backend: match (acl_rules, busy_poll) {
                (Some(rules), _) => format!("vif-acl{rules}"),
                (None, true) => "vif-busy-poll".into(),
                (None, false) => "vif".into(),
            },
            size,
            mpps: window.received_mpps(),
            detail: format!(
                "vif took {:.3} Mpps from A, delivered {:.3}; drops A-tx [{a_drops}] B-rx [{b_drops}]",
                taken as f64 / window.secs / 1e6,
                delivered as f64 / window.secs / 1e6,
            ),
            load1,
            cpu,
            pinned,
        })
    })();
    drop(pair);
    drop(daemon);
    host::unpin_process();
    result
}

/// (b) guest A → guest B through DPDK's net_vhost ports in io forwarding.
fn g2g_dpdk(o: &Options, size: usize) -> Result<Record, String> {
    let dir = Scratch::new("g2g-dpdk")?;
    let (sock_a, sock_b) = (dir.join("a.sock"), dir.join("b.sock"));
    let backend = testpmd(
        &dir,
        "g2g-be",
        Launch {
            role: Role::Backend,
            prefix: "",
            max_secs: (o.warmup + o.secs) as u64 + 120,
            options: &strings(&["--cpu", "1", "--main-cpu", "0"]),
            sockets: &[&sock_a, &sock_b],
            testpmd_args: &strings(&["--forward-mode=io"]),
            log: Path::new(""),
        },
    )?;
    let pinned = o.pin && host::pin_process(FRONTEND_CPU, FRONTEND_CPU);
    let group: Vec<u32> = backend.pid().into_iter().collect();
    let result: Result<_, String> = (|| {
        let mut pair = Pair::connect(&sock_a, &sock_b, size, CONNECT_TIMEOUT)
            .map_err(|e| format!("guests: {e}\n{}", backend.log_text()))?;
        pair.drive(o.warmup()).map_err(|e| e.to_string())?;
        let ticks = host::clock_ticks();
        let load1 = host::load1();
        let cpu0 = CpuSample::take(&group);
        let window = pair.drive(o.window()).map_err(|e| e.to_string())?;
        let cpu = cpu0.until(&CpuSample::take(&group), ticks);
        Ok((window, load1, cpu))
    })();
    host::unpin_process();
    let (_, log) = backend.stop().map_err(|e| e.to_string())?;
    let (window, load1, cpu) = result?;
    // Port 1 (B's) refusing frames = B's ring full; port 0 never transmits.
    let totals = testpmd::parse_forward_totals(&log);
    let b_refused = totals
        .iter()
        .find(|t| t.port == 1)
        .map_or(0, |t| t.tx_dropped);
    Ok(Record {
        case: "g2g",
        backend: "dpdk".into(),
        size,
        mpps: window.received_mpps(),
        detail: format!(
            "A queued {:.3} Mpps, B ring refused {b_refused} (whole run)",
            window.queued as f64 / window.secs / 1e6
        ),
        load1,
        cpu,
        pinned,
    })
}

/// Which backend consumes in (c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Consumer {
    Vif { busy_poll: bool },
    Dpdk,
}

/// (c) testpmd virtio_user txonly into one VIF (or net_vhost rxonly).
fn consume(o: &Options, size: usize, consumer: Consumer) -> Result<Record, String> {
    let dir = Scratch::new("consume")?;
    let socket = dir.join("a.sock");
    let max_secs = (o.warmup + o.secs) as u64 + 120;
    let mut daemon = None;
    let mut dpdk_backend = None;
    let mut groups = Vec::new();
    match consumer {
        Consumer::Vif { busy_poll } => {
            if o.pin {
                host::pin(host::current_tid().unwrap_or(0), BACKEND_CPU);
            }
            let d = vif_daemon(&dir, &[("a", MAC_A)], None)?;
            d.backend("a").ok_or("no VIF a")?.set_busy_poll(busy_poll);
            daemon = Some(d);
        }
        Consumer::Dpdk => {
            let be = testpmd(
                &dir,
                "consume-be",
                Launch {
                    role: Role::Backend,
                    prefix: "",
                    max_secs,
                    options: &strings(&["--cpu", "1", "--main-cpu", "0"]),
                    sockets: &[&socket],
                    testpmd_args: &strings(&["--forward-mode=rxonly"]),
                    log: Path::new(""),
                },
            )?;
            groups.extend(be.pid());
            wait_for_path(&socket, CONNECT_TIMEOUT)?;
            dpdk_backend = Some(be);
        }
    }
    let pinned = o.pin && host::pin_process(BACKEND_CPU, BACKEND_CPU);
    let frontend = testpmd(
        &dir,
        "consume-fe",
        Launch {
            role: Role::Frontend,
            prefix: "",
            max_secs,
            options: &strings(&["--cpu", "0", "--main-cpu", "1", "--mac", &MAC_A.to_string()]),
            sockets: &[&socket],
            testpmd_args: &strings(&[
                "--forward-mode=txonly",
                &format!("--txpkts={size}"),
                &format!("--eth-peer=0,{MAC_B}"),
            ]),
            log: Path::new(""),
        },
    )?;
    groups.extend(frontend.pid());
    let vif_a = daemon.as_ref().and_then(|d| d.backend("a")).cloned();
    let result: Result<_, String> = (|| {
        wait_for_rates(&frontend, CONNECT_TIMEOUT)?;
        std::thread::sleep(o.warmup());
        let ticks = host::clock_ticks();
        let load1 = host::load1();
        let from = frontend.log_text().len();
        let vif0 = vif_a.as_ref().map(|b| b.stats().snapshot().tx.packets);
        let cpu0 = CpuSample::take(&groups);
        let start = Instant::now();
        std::thread::sleep(o.window());
        let cpu = cpu0.until(&CpuSample::take(&groups), ticks);
        let secs = start.elapsed().as_secs_f64();
        let vif1 = vif_a.as_ref().map(|b| b.stats().snapshot().tx.packets);
        let log = frontend.log_text();
        let rates: Vec<f64> = testpmd::parse_rates(log.get(from..).unwrap_or(""))
            .iter()
            .filter(|r| r.port == 0)
            .map(|r| r.tx_pps as f64 / 1e6)
            .collect();
        let mpps = testpmd::median(&rates).ok_or("no testpmd report in the window")?;
        let vif_rate = match (vif0, vif1) {
            (Some(a), Some(b)) => format!(", vif counted {:.3} Mpps", (b - a) as f64 / secs / 1e6),
            _ => String::new(),
        };
        Ok((mpps, rates.len(), vif_rate, load1, cpu))
    })();
    let (_, log) = frontend.stop().map_err(|e| e.to_string())?;
    drop(dpdk_backend);
    drop(daemon);
    host::unpin_process();
    let (mpps, reports, vif_rate, load1, cpu) = result?;
    let totals = testpmd::parse_forward_totals(&log);
    let refused = totals.first().map_or(0.0, |t| {
        let offered = t.tx_packets + t.tx_dropped;
        if offered == 0 {
            0.0
        } else {
            t.tx_dropped as f64 * 100.0 / offered as f64
        }
    });
    Ok(Record {
        case: "consume",
        backend: match consumer {
            Consumer::Vif { busy_poll: false } => "vif".into(),
            Consumer::Vif { busy_poll: true } => "vif-busy-poll".into(),
            Consumer::Dpdk => "dpdk".into(),
        },
        size,
        mpps,
        detail: format!(
            "median of {reports} Tx-pps reports{vif_rate}, ring refused {refused:.0}% of offered"
        ),
        load1,
        cpu,
        pinned,
    })
}

fn wait_for_path(path: &Path, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        if Instant::now() >= deadline {
            return Err(format!("{} did not appear", path.display()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Waits for testpmd's first report with traffic: the port is connected and forwarding.
fn wait_for_rates(pmd: &Testpmd, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if testpmd::parse_rates(&pmd.log_text())
            .iter()
            .any(|r| r.tx_pps > 0)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "testpmd never reported traffic:\n{}",
                pmd.log_text()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Without `--bench`: short runs of (a) and (a') with 100 rules that must deliver frames; no
/// DPDK, no pinning.
fn smoke() -> Result<(), String> {
    smoke_run(None)?;
    smoke_run(Some(100))
}

fn smoke_run(acl_rules: Option<usize>) -> Result<(), String> {
    let dir = Scratch::new("smoke")?;
    let daemon = vif_daemon(&dir, &[("a", MAC_A), ("b", MAC_B)], acl_rules)?;
    let mut pair = Pair::connect(
        &dir.join("a.sock"),
        &dir.join("b.sock"),
        64,
        CONNECT_TIMEOUT,
    )
    .map_err(|e| e.to_string())?;
    let window = pair
        .drive(Duration::from_millis(200))
        .map_err(|e| e.to_string())?;
    drop(pair);
    // The ACL's last rule allows everything: a deny would be a classifier bug.
    let denied = daemon
        .backend("a")
        .map_or(0, |a| a.stats().snapshot().tx.drops(DropReason::AclDeny));
    drop(daemon);
    if window.received == 0 {
        return Err(format!("no frame reached guest B: {window:?}"));
    }
    if denied > 0 {
        return Err(format!(
            "{denied} frames denied by an ACL that ends in allow-all"
        ));
    }
    println!(
        "pps smoke: guest A -> B through vif ({} ACL rules): {} frames in {:.2} s (run with --bench \
         to measure)",
        acl_rules.unwrap_or(0),
        window.received,
        window.secs
    );
    Ok(())
}

/// The table of one invocation: per (case, size, backend) the median over the *clean* runs
/// (others used at most `quiet` CPUs during the window), their min-max and count, then the
/// vif/DPDK ratios of those medians. `scripts/dpdk/pps-summary.sh` does the same over saved logs.
fn summarize(records: &[Record], quiet: f64) {
    println!(
        "\n| case | frame B | backend | Mpps median (clean) | min-max (clean) | clean/all runs |"
    );
    println!("|---|---|---|---|---|---|");
    let mut keys: Vec<(&str, usize, &str)> = records
        .iter()
        .map(|r| (r.case, r.size, r.backend.as_str()))
        .collect();
    keys.sort();
    keys.dedup();
    let clean = |key: &(&str, usize, &str)| -> (Vec<f64>, usize) {
        let runs: Vec<&Record> = records
            .iter()
            .filter(|r| (r.case, r.size, r.backend.as_str()) == *key)
            .collect();
        let mpps = runs
            .iter()
            .filter(|r| r.cpu.others <= quiet)
            .map(|r| r.mpps)
            .collect();
        (mpps, runs.len())
    };
    for key in &keys {
        let (mpps, all) = clean(key);
        match testpmd::median(&mpps) {
            Some(median) => {
                let min = mpps.iter().copied().fold(f64::INFINITY, f64::min);
                let max = mpps.iter().copied().fold(0.0, f64::max);
                println!(
                    "| {} | {} | {} | {median:.2} | {min:.2}-{max:.2} | {}/{all} |",
                    key.0,
                    key.1,
                    key.2,
                    mpps.len()
                );
            }
            None => println!("| {} | {} | {} | - | - | 0/{all} |", key.0, key.1, key.2),
        }
    }
    println!();
    for key in keys.iter().filter(|k| k.2 != "dpdk") {
        let ours = testpmd::median(&clean(key).0);
        let theirs = testpmd::median(&clean(&(key.0, key.1, "dpdk")).0);
        if let (Some(ours), Some(theirs)) = (ours, theirs) {
            println!(
                "ratio {} {} B: {} / dpdk = {:.3}",
                key.0,
                key.1,
                key.2,
                ours / theirs
            );
        }
    }
}

fn run(o: &Options) -> Result<(), String> {
    testpmd::setup(&scripts()).map_err(|e| e.to_string())?;
    println!(
        "pps: {} runs x {} s (+{} s warm-up), sizes {:?}; frontends on CPU {FRONTEND_CPU}, \
         backends on CPU {BACKEND_CPU}; load1 {:.2}",
        o.runs,
        o.secs,
        o.warmup,
        o.sizes,
        host::load1()
    );
    let mut records = Vec::new();
    let mut record = |result: Result<Record, String>, what: &str| match result {
        Ok(r) => {
            r.print();
            records.push(r);
        }
        Err(e) => eprintln!("pps: {what} failed: {e}"),
    };
    for _ in 0..o.runs {
        for &size in &o.sizes {
            if o.g2g {
                if o.vif {
                    wait_quiet(o);
                    record(g2g_vif(o, size, false, None), "g2g vif");
                    if o.busy_poll {
                        wait_quiet(o);
                        record(g2g_vif(o, size, true, None), "g2g vif busy-poll");
                    }
                    if let Some(rules) = o.acl {
                        wait_quiet(o);
                        record(g2g_vif(o, size, false, Some(rules)), "g2g vif acl");
                    }
                }
                if o.dpdk {
                    wait_quiet(o);
                    record(g2g_dpdk(o, size), "g2g dpdk");
                }
            }
            if o.consume {
                if o.vif {
                    wait_quiet(o);
                    record(
                        consume(o, size, Consumer::Vif { busy_poll: false }),
                        "consume vif",
                    );
                    if o.busy_poll {
                        wait_quiet(o);
                        record(
                            consume(o, size, Consumer::Vif { busy_poll: true }),
                            "consume vif busy-poll",
                        );
                    }
                }
                if o.dpdk {
                    wait_quiet(o);
                    record(consume(o, size, Consumer::Dpdk), "consume dpdk");
                }
            }
        }
    }
    summarize(&records, o.quiet);
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return;
    }
    let options = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("pps: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let result = if options.bench {
        run(&options)
    } else {
        smoke()
    };
    if let Err(e) = result {
        eprintln!("pps: {e}");
        std::process::exit(1);
    }
}
