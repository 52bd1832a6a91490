//! `vifctl`: the command-line client of the daemon's control socket (see
//! `vhost_user_net::control::protocol` for the protocol it speaks).
//!
//! Human-readable tables by default; `--json` prints the daemon's response line as is
//! (`{"ok":true,"result":...}` or `{"ok":false,"error":{...}}`) for scripts. Exit codes:
//! 0 success, 1 the daemon refused or failed the request, 2 bad command line, 3 no such VIF,
//! 4 the daemon cannot be reached, 5 the input file cannot be read.

mod table;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde::de::DeserializeOwned;
use vhost_user_net::control::client::{ControlClient, DEFAULT_TIMEOUT};
use vhost_user_net::control::default_control_socket;
use vhost_user_net::control::protocol::{
    AclDirection, ChangeReport, DaemonStatus, DirectionCounters, ErrorCode, PolicyReport, Request,
    Response, SegmentSummary, VifCounters, VifDetail, VifSummary,
};
use vmm_integration::args::shell_line;

use table::{key_values, Table};

const EXIT_REFUSED: u8 = 1;
const EXIT_NOT_FOUND: u8 = 3;
const EXIT_UNREACHABLE: u8 = 4;
const EXIT_INPUT: u8 = 5;

const EXAMPLES: &str = "\
Examples:
  vifctl list                              VIFs, their state, segment and socket
  vifctl show web-1                        one VIF's spec and provisioning times
  vifctl stats                             packets, bytes and drops of every VIF
  vifctl stats web-1 --json | jq .result   the same for scripts
  vifctl create --config web-2.toml        add the [[vif]] tables of a file
  vifctl update --config web-2.toml        replace running VIFs with the file's version
  vifctl remove web-2                      stop a VIF and remove its socket
  vifctl apply desired.toml --dry-run      what apply would add, change and remove
  vifctl apply desired.toml                make the running VIFs exactly the file's
  vifctl set-acl web-1 ingress --file web-acl.toml   replace the ACL of one direction
  vifctl set-qos web-1 --clear              remove a VIF's rate limits
  vifctl --socket /run/vif/control.sock segments

Exit codes: 0 success, 1 the daemon refused or failed the request (nothing changed when it
refused), 2 bad command line, 3 no such VIF, 4 cannot reach the daemon, 5 cannot read the file.
set-acl and set-qos swap the policy in while traffic flows.";

/// Manage the VIFs of a running vhost-user-net daemon through its control socket.
#[derive(Debug, Parser)]
#[command(version, after_help = EXAMPLES)]
struct Cli {
    /// Control socket [default: $VIF_RUNTIME_DIR, $XDG_RUNTIME_DIR/vif or /tmp/vif, then control.sock].
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,

    /// Print the daemon's JSON response instead of tables.
    #[arg(long, global = true)]
    json: bool,

    /// Seconds to wait for the daemon's answer.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT.as_secs())]
    timeout: u64,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The daemon: version, pid, uptime, VIF count, metrics address.
    Status,
    /// Every VIF with its connection state, segment, MAC and socket.
    List,
    /// One VIF in detail.
    Show { vif: String },
    /// Counters of one VIF, or of all.
    Stats { vif: Option<String> },
    /// Segments, their VIFs and learned MACs.
    Segments,
    /// Add the VIFs of a config file ([[vif]] tables); none may exist yet.
    Create {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Replace running VIFs with the versions in a config file.
    Update {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Stop a VIF and remove its socket.
    Remove { vif: String },
    /// Make the running VIFs exactly those of FILE: add, change, and remove the rest.
    Apply {
        file: PathBuf,
        /// Report what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Replace one direction's ACL of a VIF (FILE: an ACL table: name, default_action, rules).
    SetAcl {
        vif: String,
        #[arg(value_enum)]
        direction: DirectionArg,
        #[arg(long, value_name = "FILE", required_unless_present = "clear")]
        file: Option<PathBuf>,
        /// Remove the ACL instead.
        #[arg(long, conflicts_with = "file")]
        clear: bool,
    },
    /// Replace a VIF's rate limits (FILE: a QoS table: name, tx, rx).
    SetQos {
        vif: String,
        #[arg(long, value_name = "FILE", required_unless_present = "clear")]
        file: Option<PathBuf>,
        /// Remove the rate limits instead.
        #[arg(long, conflicts_with = "file")]
        clear: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DirectionArg {
    /// Frames delivered to the guest.
    Ingress,
    /// Frames the guest sends.
    Egress,
}

/// Reads a TOML policy file (an ACL or QoS table), or `None` for `--clear`.
fn read_policy<T: DeserializeOwned>(file: Option<&Path>) -> Result<Option<T>, Failure> {
    let Some(path) = file else {
        return Ok(None);
    };
    let (text, _) = read_config(path)?;
    toml::from_str(&text).map(Some).map_err(|e| Failure {
        code: EXIT_INPUT,
        message: format!("{}: {e}", path.display()),
    })
}

/// A failure before or outside the daemon's answer, with its exit code.
struct Failure {
    code: u8,
    message: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("vifctl: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Reads a config file and the directory its relative socket paths are relative to.
fn read_config(path: &Path) -> Result<(String, PathBuf), Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| Failure {
        code: EXIT_INPUT,
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let base = match dir {
        Some(dir) => std::fs::canonicalize(dir),
        None => std::env::current_dir(),
    }
    .map_err(|e| Failure {
        code: EXIT_INPUT,
        message: format!("cannot resolve the directory of {}: {e}", path.display()),
    })?;
    Ok((text, base))
}

fn request(cli: &Cli) -> Result<Request, Failure> {
    Ok(match &cli.command {
        Command::Status => Request::Status {},
        Command::List => Request::List {},
        Command::Show { vif } => Request::Show { vif: vif.clone() },
        Command::Stats { vif } => Request::Stats { vif: vif.clone() },
        Command::Segments => Request::Segments {},
        Command::Create { config } => {
            let (config, base) = read_config(config)?;
            Request::Create {
                config,
                base: Some(base),
            }
        }
        Command::Update { config } => {
            let (config, base) = read_config(config)?;
            Request::Update {
                config,
                base: Some(base),
            }
        }
        Command::Remove { vif } => Request::Remove { vif: vif.clone() },
        Command::SetAcl {
            vif,
            direction,
            file,
            clear: _,
        } => Request::SetAcl {
            vif: vif.clone(),
            direction: match direction {
                DirectionArg::Ingress => AclDirection::Ingress,
                DirectionArg::Egress => AclDirection::Egress,
            },
            acl: read_policy(file.as_deref())?,
        },
        Command::SetQos {
            vif,
            file,
            clear: _,
        } => Request::SetQos {
            vif: vif.clone(),
            qos: read_policy(file.as_deref())?,
        },
        Command::Apply { file, dry_run } => {
            let (config, base) = read_config(file)?;
            Request::Apply {
                config,
                base: Some(base),
                dry_run: *dry_run,
            }
        }
    })
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let request = request(cli)?;
    let socket = cli.socket.clone().unwrap_or_else(default_control_socket);
    let unreachable = |e: vhost_user_net::control::client::ClientError| Failure {
        code: EXIT_UNREACHABLE,
        message: e.to_string(),
    };
    let timeout = Duration::from_secs(cli.timeout.max(1));
    let mut client = ControlClient::connect(&socket, timeout).map_err(unreachable)?;
    let response = client.request(&request).map_err(unreachable)?;
    if cli.json {
        let line = String::from_utf8_lossy(&response.to_line()).into_owned();
        print!("{line}");
    }
    if !response.ok {
        let (code, message) = match &response.error {
            Some(error) => (error.code, error.message.clone()),
            None => (
                ErrorCode::Failed,
                "the daemon reported a failure".to_owned(),
            ),
        };
        return Err(Failure {
            code: if code == ErrorCode::NotFound {
                EXIT_NOT_FOUND
            } else {
                EXIT_REFUSED
            },
            message,
        });
    }
    if !cli.json {
        print!("{}", human(&cli.command, &response)?);
    }
    Ok(())
}

fn result<T: DeserializeOwned>(response: &Response) -> Result<T, Failure> {
    let value = response.result.clone().unwrap_or_default();
    serde_json::from_value(value).map_err(|e| Failure {
        code: EXIT_UNREACHABLE,
        message: format!("unexpected response from the daemon: {e}"),
    })
}

fn human(command: &Command, response: &Response) -> Result<String, Failure> {
    Ok(match command {
        Command::Status => status(&result(response)?),
        Command::List => list(&result::<Vec<_>>(response)?),
        Command::Show { .. } => show(&result(response)?),
        Command::Stats { vif } => stats(&result::<Vec<_>>(response)?, vif.is_some()),
        Command::Segments => segments(&result::<Vec<_>>(response)?),
        Command::Create { .. }
        | Command::Update { .. }
        | Command::Remove { .. }
        | Command::Apply { .. } => changes(&result(response)?),
        Command::SetAcl { .. } | Command::SetQos { .. } => policy(&result(response)?),
    })
}

fn status(status: &DaemonStatus) -> String {
    key_values(&[
        ("version", status.version.clone()),
        ("pid", status.pid.to_string()),
        ("uptime", format!("{:.0} s", status.uptime_seconds)),
        ("vifs", status.vifs.to_string()),
        ("segments", status.segments.to_string()),
        (
            "control socket",
            status.control_socket.display().to_string(),
        ),
        (
            "metrics",
            status
                .metrics_listen
                .as_ref()
                .map_or("off".to_owned(), |a| format!("http://{a}/metrics")),
        ),
    ])
}

fn list(vifs: &[VifSummary]) -> String {
    let mut table = Table::new(&[
        "VIF", "STATE", "SEGMENT", "MAC", "#MTU", "#QP", "TENANT", "#CONNS", "MODE", "SOCKET",
    ]);
    for vif in vifs {
        table.row(vec![
            vif.id.clone(),
            vif.state.clone(),
            vif.segment.clone(),
            vif.mac.clone(),
            vif.mtu.to_string(),
            vif.queue_pairs.to_string(),
            vif.tenant.clone().unwrap_or_else(|| "-".to_owned()),
            vif.connections.to_string(),
            vif.mode.clone(),
            // An SR-IOV VIF has no socket: its VF's PCI address is what the VMM takes.
            match &vif.vf {
                Some(vf) => format!("{} (VF {} of {})", vf.bdf, vf.vf_index, vf.pf),
                None => vif.socket.display().to_string(),
            },
        ]);
    }
    table.render()
}

fn seconds(value: Option<f64>) -> String {
    value.map_or("-".to_owned(), |s| format!("{:.3} s", s))
}

fn show(vif: &VifDetail) -> String {
    let s = &vif.summary;
    let mut pairs = vec![
        ("vif", s.id.clone()),
        ("state", s.state.clone()),
        ("socket", format!("{} ({})", s.socket.display(), s.mode)),
        ("segment", s.segment.clone()),
        ("mac", s.mac.clone()),
        ("mtu", s.mtu.to_string()),
        ("queue pairs", s.queue_pairs.to_string()),
        ("connections", s.connections.to_string()),
        ("socket ready after", seconds(vif.socket_ready_seconds)),
        ("driver ok after", seconds(vif.driver_ok_seconds)),
    ];
    if s.vf.is_some() {
        // No socket, no segment, no frontend: the guest drives the VF itself.
        pairs.retain(|(key, _)| matches!(*key, "vif" | "state" | "mac" | "mtu"));
    }
    // An SR-IOV VIF: its VF and what the VMM needs to take it.
    if let Some(vf) = &s.vf {
        pairs.extend([
            ("vf", format!("{} of {} at {}", vf.vf_index, vf.pf, vf.bdf)),
            (
                "host driver",
                vf.host_driver.clone().unwrap_or_else(|| "-".into()),
            ),
            ("qemu", shell_line(&vf.qemu_args)),
            ("cloud-hypervisor", shell_line(&vf.cloud_hypervisor_args)),
        ]);
    }
    let mut out = key_values(&pairs);
    out.push_str("spec:\n");
    let spec = serde_json::to_string_pretty(&vif.spec).unwrap_or_default();
    for line in spec.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn drops(counters: &DirectionCounters) -> u64 {
    counters
        .drops
        .values()
        .fold(0, |sum, n| sum.wrapping_add(*n))
}

fn stats(vifs: &[VifCounters], detail: bool) -> String {
    let mut table = Table::new(&[
        "VIF",
        "#RX PKTS",
        "#RX BYTES",
        "#RX DROPS",
        "#TX PKTS",
        "#TX BYTES",
        "#TX DROPS",
        "#THROTTLED",
    ]);
    for vif in vifs {
        table.row(vec![
            vif.id.clone(),
            vif.rx.packets.to_string(),
            vif.rx.bytes.to_string(),
            drops(&vif.rx).to_string(),
            vif.tx.packets.to_string(),
            vif.tx.bytes.to_string(),
            drops(&vif.tx).to_string(),
            vif.tx.throttled.to_string(),
        ]);
    }
    let mut out = table.render();
    if detail {
        let mut reasons = Table::new(&["VIF", "DIRECTION", "REASON", "#DROPS"]);
        for vif in vifs {
            for (direction, counters) in [("rx", &vif.rx), ("tx", &vif.tx)] {
                for (reason, count) in &counters.drops {
                    reasons.row(vec![
                        vif.id.clone(),
                        direction.to_owned(),
                        reason.clone(),
                        count.to_string(),
                    ]);
                }
            }
        }
        out.push('\n');
        if vifs
            .iter()
            .all(|v| v.rx.drops.is_empty() && v.tx.drops.is_empty())
        {
            out.push_str("no drops\n");
        } else {
            out.push_str(&reasons.render());
        }
    }
    out
}

fn segments(segments: &[SegmentSummary]) -> String {
    let mut table = Table::new(&["SEGMENT", "#FDB", "VIFS"]);
    for segment in segments {
        table.row(vec![
            segment.name.clone(),
            segment.fdb_entries.to_string(),
            segment.vifs.join(","),
        ]);
    }
    table.render()
}

fn policy(report: &PolicyReport) -> String {
    match (&report.name, report.rules) {
        (Some(name), Some(rules)) => {
            format!(
                "{}: {} = {name} ({rules} rules)\n",
                report.vif, report.field
            )
        }
        (Some(name), None) => format!("{}: {} = {name}\n", report.vif, report.field),
        (None, _) => format!("{}: {} cleared\n", report.vif, report.field),
    }
}

fn changes(report: &ChangeReport) -> String {
    let mut out = String::new();
    if report.dry_run {
        out.push_str("dry run: nothing changed\n");
    }
    for vif in &report.added {
        out.push_str(&format!("+ {vif}  added\n"));
    }
    for change in &report.changed {
        out.push_str(&format!(
            "~ {}  {} ({})\n",
            change.id,
            change.action,
            change.fields.join(", ")
        ));
    }
    for vif in &report.removed {
        out.push_str(&format!("- {vif}  removed\n"));
    }
    if !report.unchanged.is_empty() {
        out.push_str(&format!("= {} unchanged\n", report.unchanged.len()));
    }
    if report.is_empty() && report.unchanged.is_empty() {
        out.push_str("no VIFs\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use vhost_user_net::control::protocol::VfSummary;

    use super::*;

    fn sriov_vif() -> VifSummary {
        VifSummary {
            id: "db-1".into(),
            state: "assigned".into(),
            socket: PathBuf::new(),
            mode: "vfio".into(),
            segment: String::new(),
            mac: "52:54:00:00:04:01".into(),
            mtu: 1500,
            queue_pairs: 1,
            tenant: None,
            connections: 0,
            vf: Some(VfSummary {
                pf: "eth0".into(),
                vf_index: 3,
                bdf: "0000:3b:02.3".into(),
                host_driver: Some("iavf".into()),
                adopted: false,
                qemu_args: vec![
                    "-device".into(),
                    "vfio-pci,host=0000:3b:02.3,id=db-1".into(),
                ],
                cloud_hypervisor_args: vec![
                    "--device".into(),
                    "path=/sys/bus/pci/devices/0000:3b:02.3/,id=db-1".into(),
                ],
            }),
        }
    }

    #[test]
    fn sriov_vifs_show_their_vf_instead_of_a_socket() {
        let listed = list(&[sriov_vif()]);
        assert!(listed.contains("0000:3b:02.3 (VF 3 of eth0)"), "{listed}");
        let shown = show(&VifDetail {
            summary: sriov_vif(),
            spec: serde_json::Value::Null,
            socket_ready_seconds: None,
            driver_ok_seconds: None,
        });
        assert!(
            shown.contains("qemu:              -device vfio-pci,host=0000:3b:02.3,id=db-1"),
            "{shown}"
        );
        assert!(shown.contains("--device path=/sys/bus/pci/devices/0000:3b:02.3/,id=db-1"));
        assert!(!shown.contains("socket"), "{shown}");
    }
}
