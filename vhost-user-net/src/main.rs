//! `vhost-user-net`: the daemon's command line, logging and signals. Everything it runs lives in
//! the library ([`vhost_user_net::config`], [`vhost_user_net::daemon`]).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use vhost_user_net::config::{DaemonConfig, QuickVif, SocketMode, VifConfig, DEFAULT_MAC};
use vhost_user_net::daemon::events::SignalFd;
use vhost_user_net::daemon::Daemon;
use vhost_user_net::uplink::sriov::{SriovError, VfAssignment};
use vif_core::mac::MacAddr;
use vif_core::model::UplinkSpec;
use vmm_integration::args::{
    cloud_hypervisor_args, qemu_args, qemu_nic_args, shell_line, CloudHypervisorOptions,
    DaemonMode, QemuOptions, VhostUserNic,
};

const EXAMPLES: &str = "\
Examples:
  vhost-user-net
      One VIF `vif0` on $XDG_RUNTIME_DIR/vif/vif0.sock (or /tmp/vif/vif0.sock), MAC
      52:54:00:76:69:00, MTU 1500, local segment `default`; prints the QEMU and Cloud
      Hypervisor arguments that attach a VM to it.
  vhost-user-net --socket /run/vif/web.sock --mac 52:54:00:00:00:01 --mtu 9000 --queue-pairs 2
  vhost-user-net --client --socket /run/qemu/web.sock
      Client mode: QEMU listens (server=on); the daemon connects and reconnects.
  vhost-user-net --config /etc/vif/vif.toml --log-level debug
      Many VIFs from a TOML file ([[vif]] tables; see examples/vif.toml).
  vhost-user-net --config vif.toml --metrics-listen 127.0.0.1:9500 --control-socket /run/vif/ctl.sock
      Prometheus metrics on http://127.0.0.1:9500/metrics; manage VIFs at runtime with
      `vifctl --socket /run/vif/ctl.sock list|create|remove|apply ...`.

SIGINT or SIGTERM stops the daemon and removes the sockets it created.";

/// vhost-user-net backend: serves VM network interfaces (VIFs) over vhost-user sockets.
#[derive(Debug, Parser)]
#[command(version, after_help = EXAMPLES)]
struct Cli {
    /// Serve the VIFs of this TOML file instead of one VIF from flags.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["id", "socket", "mac", "mtu", "queue_pairs", "queue_size", "client", "segment"])]
    config: Option<PathBuf>,

    /// VIF id (metric label, default socket name).
    #[arg(long, value_name = "ID")]
    id: Option<String>,

    /// vhost-user socket path [default: $VIF_RUNTIME_DIR, $XDG_RUNTIME_DIR/vif or /tmp/vif, then <ID>.sock].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,

    /// Guest MAC address [default: 52:54:00:76:69:00].
    #[arg(long, value_name = "MAC")]
    mac: Option<MacAddr>,

    /// Guest MTU [default: 1500].
    #[arg(long)]
    mtu: Option<u16>,

    /// Queue pairs (one worker thread each) [default: 1].
    #[arg(long, value_name = "N")]
    queue_pairs: Option<u16>,

    /// Most descriptors per virtqueue [default: 256].
    #[arg(long, value_name = "N")]
    queue_size: Option<u16>,

    /// Client mode: connect to a socket the VMM listens on, and reconnect after it restarts.
    #[arg(long)]
    client: bool,

    /// Local segment the VIF is switched on [default: default].
    #[arg(long, value_name = "NAME")]
    segment: Option<String>,

    /// Log level: error, warn, info, debug or trace [default: $RUST_LOG, else info].
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<log::LevelFilter>,

    /// Do not print the QEMU / Cloud Hypervisor arguments at start.
    #[arg(long)]
    no_hints: bool,

    /// Serve Prometheus metrics on this address [default: [metrics] listen, else 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "no_metrics")]
    metrics_listen: Option<std::net::SocketAddr>,

    /// Do not serve metrics.
    #[arg(long)]
    no_metrics: bool,

    /// Control socket path [default: [control] socket, else <runtime dir>/control.sock].
    #[arg(long, value_name = "PATH", conflicts_with = "no_control")]
    control_socket: Option<PathBuf>,

    /// Do not open a control socket.
    #[arg(long)]
    no_control: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level);
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            eprintln!("vhost-user-net: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: Option<log::LevelFilter>) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if let Some(level) = level {
        builder.filter_level(level);
    }
    builder.init();
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    // Before any thread exists, so every thread inherits the blocked mask (see daemon::events).
    let signals = SignalFd::block_shutdown_signals().context("cannot set up signal handling")?;
    let mut config = match &cli.config {
        Some(path) => DaemonConfig::from_file(path)?,
        None => DaemonConfig::from_flags(&QuickVif {
            id: cli.id.clone(),
            socket: cli.socket.clone(),
            mac: cli.mac,
            mtu: cli.mtu,
            queue_pairs: cli.queue_pairs,
            queue_size: cli.queue_size,
            client: cli.client,
            segment: cli.segment.clone(),
        })?,
    };
    if let Some(addr) = cli.metrics_listen {
        config.metrics.listen = Some(addr);
    }
    if cli.no_metrics {
        config.metrics.enabled = false;
    }
    if let Some(path) = &cli.control_socket {
        config.control.socket = Some(path.clone());
    }
    if cli.no_control {
        config.control.enabled = false;
    }
    let daemon = Daemon::start(&config)?;
    if !cli.no_hints {
        print_hints(&config, &daemon);
    }
    let signal = daemon.run(signals)?;
    log::info!("stopped (signal {signal}); sockets removed");
    Ok(())
}

fn nic(vif: &VifConfig) -> VhostUserNic {
    VhostUserNic {
        id: vif.spec.id.to_string(),
        socket: vif.socket.clone(),
        mac: vif.spec.mac,
        mtu: vif.spec.mtu,
        queue_pairs: vif.spec.queue_pairs,
        queue_size: vif.spec.queue_size,
        daemon_mode: match vif.mode {
            SocketMode::Server => DaemonMode::Server,
            SocketMode::Client => DaemonMode::Client,
        },
    }
}

fn is_sriov(vif: &VifConfig) -> bool {
    matches!(vif.spec.uplink, UplinkSpec::SriovVf(_))
}

/// Prints, on stdout, what the operator needs to attach a VM: one line per VIF, then the QEMU
/// and Cloud Hypervisor arguments: vhost-user for socket VIFs, VFIO for SR-IOV VIFs (their VF,
/// which `daemon` prepared).
fn print_hints(config: &DaemonConfig, daemon: &Daemon) {
    let (vfs, sockets): (Vec<&VifConfig>, Vec<&VifConfig>) =
        config.vifs.iter().partition(|vif| is_sriov(vif));
    let nics: Vec<VhostUserNic> = sockets.iter().map(|vif| nic(vif)).collect();
    let mut out = String::new();
    for vif in &sockets {
        let role = match vif.mode {
            SocketMode::Server => "listening on",
            SocketMode::Client => "connecting to",
        };
        out.push_str(&format!(
            "vif {}: {role} {} (mac {}, mtu {}, {} queue pair(s))\n",
            vif.spec.id,
            vif.socket.display(),
            vif.spec.mac,
            vif.spec.mtu,
            vif.spec.queue_pairs
        ));
    }
    for vif in &vfs {
        out.push_str(&match daemon.vf_assignment(vif.spec.id.as_str()) {
            Some(vf) => format!(
                "vif {}: SR-IOV VF {} of {} at {}, bound to vfio-pci (mac {} set on the PF)\n",
                vif.spec.id, vf.vf, vf.pf, vf.bdf, vif.spec.mac
            ),
            None => format!("vif {}: SR-IOV, no VF assigned\n", vif.spec.id),
        });
    }
    if config.vifs.iter().any(|v| v.spec.mac == DEFAULT_MAC) {
        out.push_str("(52:54:00:76:69:00 is the default MAC: give each VM on a segment its own with --mac)\n");
    }
    if !nics.is_empty() {
        vhost_user_hints(&mut out, &nics);
    }
    if !vfs.is_empty() {
        let assigned: Vec<&VfAssignment> = vfs
            .iter()
            .filter_map(|vif| daemon.vf_assignment(vif.spec.id.as_str()))
            .collect();
        vfio_hints(&mut out, &assigned);
    }
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (daemon started with >&-) must not stop the daemon.
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

/// The QEMU and Cloud Hypervisor command lines for the vhost-user VIFs.
fn vhost_user_hints(out: &mut String, nics: &[VhostUserNic]) {
    let qemu = QemuOptions::default();
    match qemu_args(nics, &qemu) {
        Ok(args) => {
            out.push_str("\nQEMU (with KVM):\n  qemu-system-x86_64 -accel kvm ");
            out.push_str(&shell_line(&args));
            out.push_str(
                "\n  vhost-user needs guest memory the daemon can map: keep \
                 memory-backend-memfd with share=on, -numa node,memdev=mem, and size equal to -m.\n",
            );
            out.push_str(
                "  Without KVM (TCG), QEMU 7.2 loses vhost-user interrupts through MSI-X: add \
                 vectors=0 to -device virtio-net-pci, as in:\n",
            );
            let tcg = QemuOptions { kvm: false, ..qemu };
            for nic in nics {
                if let Ok(args) = qemu_nic_args(nic, &tcg) {
                    if let Some(device) = args.last() {
                        out.push_str(&format!("    -device {}\n", shell_line(&[device])));
                    }
                }
            }
        }
        Err(e) => out.push_str(&format!("\nQEMU: {e}\n")),
    }
    match cloud_hypervisor_args(nics, &CloudHypervisorOptions::default()) {
        Ok(args) => {
            out.push_str("\nCloud Hypervisor:\n  cloud-hypervisor ");
            out.push_str(&shell_line(&args));
            out.push('\n');
        }
        Err(e) => out.push_str(&format!("\nCloud Hypervisor: {e}\n")),
    }
}

/// The VFIO arguments that pass the SR-IOV VIFs' VFs (`assigned`) to the VM: the guest
/// drives each VF itself, so there is no socket and no shared-memory requirement, and the
/// daemon has bound each VF to vfio-pci already.
fn vfio_hints(out: &mut String, assigned: &[&VfAssignment]) {
    let collect = |args: fn(&VfAssignment) -> Result<Vec<String>, SriovError>| {
        assigned
            .iter()
            .map(|vf| args(vf))
            .collect::<Result<Vec<Vec<String>>, SriovError>>()
            .map(|args| args.concat())
    };
    out.push_str("\nSR-IOV VFs (VFIO passthrough; add to the VM's command line):\n");
    match collect(VfAssignment::qemu_args) {
        Ok(args) => out.push_str(&format!("  QEMU: {}\n", shell_line(&args))),
        Err(e) => out.push_str(&format!("  QEMU: {e}\n")),
    }
    match collect(VfAssignment::cloud_hypervisor_args) {
        Ok(args) => out.push_str(&format!("  Cloud Hypervisor: {}\n", shell_line(&args))),
        Err(e) => out.push_str(&format!("  Cloud Hypervisor: {e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use vhost_user_net::uplink::sriov::netlink::VfConfig;

    use super::*;

    fn assignment(vif: &str, vf: u16) -> VfAssignment {
        let mac = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
        VfAssignment {
            vif: vif.to_owned(),
            pf: "eth0".to_owned(),
            pf_ifindex: 7,
            vf,
            bdf: format!("0000:3b:02.{vf}").parse().unwrap(),
            host_driver: Some("iavf".to_owned()),
            config: VfConfig {
                vf: u32::from(vf),
                mac,
                vlan: None,
                spoofchk: true,
                trust: None,
                rate: None,
            },
            adopted: false,
        }
    }

    #[test]
    fn sriov_vifs_get_vfio_arguments() {
        let (a, b) = (assignment("db-1", 1), assignment("db-2", 2));
        let mut out = String::new();
        vfio_hints(&mut out, &[&a, &b]);
        assert_eq!(
            out,
            "\nSR-IOV VFs (VFIO passthrough; add to the VM's command line):\n  \
             QEMU: -device vfio-pci,host=0000:3b:02.1,id=db-1 \
             -device vfio-pci,host=0000:3b:02.2,id=db-2\n  \
             Cloud Hypervisor: --device path=/sys/bus/pci/devices/0000:3b:02.1/,id=db-1 \
             --device path=/sys/bus/pci/devices/0000:3b:02.2/,id=db-2\n"
        );
        assert!(!out.contains("vhost-user"));
    }
}
