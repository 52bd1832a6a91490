//! The QEMU and Cloud Hypervisor command-line arguments that attach a VM to a VIF served by the
//! `vhost-user-net` daemon.
//!
//! A vhost-user device needs two things from the VMM: a socket to the daemon and guest memory the
//! daemon can map. The memory must be shared (`share=on` in QEMU, `shared=on` in Cloud
//! Hypervisor) because the daemon receives it as file descriptors in `SET_MEM_TABLE` and maps it
//! itself (vhost-user spec, "Memory regions"); private anonymous memory cannot be passed.
//!
//! Who listens on the socket is a per-VIF choice:
//! - [`DaemonMode::Server`]: the daemon listens and the VMM connects (QEMU `-chardev socket`
//!   without `server=on`; Cloud Hypervisor `vhost_mode=client`, its default);
//! - [`DaemonMode::Client`]: the VMM listens and the daemon connects, so a restarted daemon finds
//!   its running VMs again (QEMU `server=on,wait=off`; Cloud Hypervisor `vhost_mode=server`).
//!
//! This module only builds strings: it starts nothing (see [`crate::launcher`]).

use std::fmt::Write as _;
use std::path::PathBuf;

use vif_core::mac::MacAddr;

/// Which side of the vhost-user socket the daemon is on, for one VIF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DaemonMode {
    /// The daemon listens; the VMM connects.
    Server,
    /// The VMM listens; the daemon connects (and reconnects).
    Client,
}

/// One VIF as the VMM sees it: a vhost-user virtio-net device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhostUserNic {
    /// The VIF id; QEMU ids are derived from it (`chr-<id>`, `net-<id>`).
    pub id: String,
    pub socket: PathBuf,
    pub mac: MacAddr,
    pub mtu: u16,
    pub queue_pairs: u16,
    pub queue_size: u16,
    pub daemon_mode: DaemonMode,
}

/// The Ethernet MTU the guest assumes when the device does not offer `VIRTIO_NET_F_MTU`; `host_mtu`
/// / `mtu=` is only emitted for other values, which keeps the common line short.
pub const DEFAULT_MTU: u16 = 1500;

/// QEMU's virtio-net `rx_queue_size`/`tx_queue_size` default and bounds (hw/net/virtio-net.c,
/// `VIRTIO_NET_RX_QUEUE_MIN_SIZE` and `VIRTQUEUE_MAX_SIZE`).
pub const QEMU_QUEUE_SIZE_DEFAULT: u16 = 256;
pub const QEMU_QUEUE_SIZE_MIN: u16 = 256;
pub const QEMU_QUEUE_SIZE_MAX: u16 = 1024;

/// VM-wide QEMU settings that the per-VIF arguments depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QemuOptions {
    /// Guest memory size; the shared memfd backend must cover all of it (`-m` must match).
    pub memory_mib: u64,
    /// Whether the VM runs under KVM. Without it (TCG), QEMU 7.2 does not deliver vhost-user
    /// interrupts through MSI-X (no irqfd; masked vectors are never re-raised), so the device
    /// must fall back to INTx with `vectors=0`.
    pub kvm: bool,
    /// For [`DaemonMode::Server`] VIFs: let QEMU reconnect to a restarted daemon after this many
    /// seconds (`reconnect=N`, QEMU < 9.2; newer QEMU spells it `reconnect-ms`).
    pub reconnect_secs: Option<u32>,
}

impl Default for QemuOptions {
    fn default() -> Self {
        QemuOptions {
            memory_mib: 1024,
            kvm: true,
            reconnect_secs: None,
        }
    }
}

/// VM-wide Cloud Hypervisor settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloudHypervisorOptions {
    pub memory_mib: u64,
}

impl Default for CloudHypervisorOptions {
    fn default() -> Self {
        CloudHypervisorOptions { memory_mib: 1024 }
    }
}

/// A VIF that a VMM's option syntax cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("vif {vif}: socket path {path:?} is not UTF-8; {vmm} options are text")]
    NonUtf8Path {
        vif: String,
        vmm: &'static str,
        path: PathBuf,
    },
    #[error(
        "vif {vif}: socket path {path:?} contains a comma, which Cloud Hypervisor's option \
         parser splits on"
    )]
    CommaInPath { vif: String, path: PathBuf },
    #[error("vif {vif}: id {id:?} contains a comma or '=', which {vmm} options cannot carry")]
    BadId {
        vif: String,
        vmm: &'static str,
        id: String,
    },
    #[error("vif {vif}: {host:?} is not a PCI address (DDDD:BB:DD.F)")]
    BadPciAddress { vif: String, host: String },
    #[error(
        "vif {vif}: queue_size {queue_size} is out of QEMU's virtio-net range [{min}, {max}]; \
         QEMU would program rings larger than the daemon accepts"
    )]
    QemuQueueSize {
        vif: String,
        queue_size: u16,
        min: u16,
        max: u16,
    },
}

/// The shared guest memory QEMU needs for any vhost-user device:
/// `-object memory-backend-memfd,id=mem,size=<N>M,share=on -numa node,memdev=mem`.
pub fn qemu_memory_args(memory_mib: u64) -> Vec<String> {
    vec![
        "-m".into(),
        format!("{memory_mib}M"),
        "-object".into(),
        format!("memory-backend-memfd,id=mem,size={memory_mib}M,share=on"),
        "-numa".into(),
        "node,memdev=mem".into(),
    ]
}

/// `-chardev`, `-netdev` and `-device` for one VIF.
pub fn qemu_nic_args(nic: &VhostUserNic, opts: &QemuOptions) -> Result<Vec<String>, ArgsError> {
    const VMM: &str = "QEMU";
    check_id(nic, VMM)?;
    let path = nic.socket.to_str().ok_or_else(|| ArgsError::NonUtf8Path {
        vif: nic.id.clone(),
        vmm: VMM,
        path: nic.socket.clone(),
    })?;
    if !(QEMU_QUEUE_SIZE_MIN..=QEMU_QUEUE_SIZE_MAX).contains(&nic.queue_size) {
        return Err(ArgsError::QemuQueueSize {
            vif: nic.id.clone(),
            queue_size: nic.queue_size,
            min: QEMU_QUEUE_SIZE_MIN,
            max: QEMU_QUEUE_SIZE_MAX,
        });
    }
    let chardev_id = format!("chr-{}", nic.id);
    let netdev_id = format!("net-{}", nic.id);

    // QEMU's option syntax escapes a comma inside a value by doubling it (util/qemu-option.c).
    let mut chardev = format!("socket,id={chardev_id},path={}", path.replace(',', ",,"));
    match nic.daemon_mode {
        DaemonMode::Client => chardev.push_str(",server=on,wait=off"),
        DaemonMode::Server => {
            if let Some(secs) = opts.reconnect_secs {
                let _ = write!(chardev, ",reconnect={secs}");
            }
        }
    }

    let mut netdev = format!("vhost-user,id={netdev_id},chardev={chardev_id}");
    let mut device = format!("virtio-net-pci,netdev={netdev_id},mac={}", nic.mac);
    if nic.queue_pairs > 1 {
        let _ = write!(netdev, ",queues={}", nic.queue_pairs);
        device.push_str(",mq=on");
        if opts.kvm {
            // One vector per queue, one for config changes, one for the control queue
            // (QEMU docs/system/devices/net.rst, "vectors=2*N+2").
            let vectors = u32::from(nic.queue_pairs) * 2 + 2;
            let _ = write!(device, ",vectors={vectors}");
        }
    }
    if !opts.kvm {
        device.push_str(",vectors=0");
    }
    if nic.mtu != DEFAULT_MTU {
        let _ = write!(device, ",host_mtu={}", nic.mtu);
    }
    if nic.queue_size != QEMU_QUEUE_SIZE_DEFAULT {
        let _ = write!(
            device,
            ",rx_queue_size={0},tx_queue_size={0}",
            nic.queue_size
        );
    }
    Ok(vec![
        "-chardev".into(),
        chardev,
        "-netdev".into(),
        netdev,
        "-device".into(),
        device,
    ])
}

/// Everything QEMU needs for these VIFs: shared memory first, then each VIF.
pub fn qemu_args(nics: &[VhostUserNic], opts: &QemuOptions) -> Result<Vec<String>, ArgsError> {
    let mut args = qemu_memory_args(opts.memory_mib);
    for nic in nics {
        args.extend(qemu_nic_args(nic, opts)?);
    }
    Ok(args)
}

/// `--net vhost_user=true,...` for one VIF. `num_queues` counts queues, not pairs.
pub fn cloud_hypervisor_nic_args(nic: &VhostUserNic) -> Result<Vec<String>, ArgsError> {
    const VMM: &str = "Cloud Hypervisor";
    check_id(nic, VMM)?;
    let path = nic.socket.to_str().ok_or_else(|| ArgsError::NonUtf8Path {
        vif: nic.id.clone(),
        vmm: VMM,
        path: nic.socket.clone(),
    })?;
    if path.contains(',') {
        return Err(ArgsError::CommaInPath {
            vif: nic.id.clone(),
            path: nic.socket.clone(),
        });
    }
    // Cloud Hypervisor's `vhost_mode` names the VMM's side, the opposite of the daemon's.
    let vhost_mode = match nic.daemon_mode {
        DaemonMode::Server => "client",
        DaemonMode::Client => "server",
    };
    let mut net = format!(
        "vhost_user=true,socket={path},num_queues={},queue_size={},vhost_mode={vhost_mode},mac={}",
        u32::from(nic.queue_pairs) * 2,
        nic.queue_size,
        nic.mac
    );
    if nic.mtu != DEFAULT_MTU {
        let _ = write!(net, ",mtu={}", nic.mtu);
    }
    Ok(vec!["--net".into(), net])
}

/// Everything Cloud Hypervisor needs for these VIFs: shared memory, then one `--net` per VIF.
pub fn cloud_hypervisor_args(
    nics: &[VhostUserNic],
    opts: &CloudHypervisorOptions,
) -> Result<Vec<String>, ArgsError> {
    let mut args = vec![
        "--memory".to_string(),
        format!("size={}M,shared=on", opts.memory_mib),
    ];
    if !nics.is_empty() {
        args.push("--net".into());
    }
    for nic in nics {
        // `--net` takes several values; one flag keeps the line readable.
        let mut one = cloud_hypervisor_nic_args(nic)?;
        args.append(&mut one.split_off(1));
    }
    Ok(args)
}

/// Joins arguments into one line a POSIX shell reads back as the same arguments.
pub fn shell_line<S: AsRef<str>>(args: &[S]) -> String {
    let mut line = String::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        line.push_str(&shell_quote(arg.as_ref()));
    }
    line
}

/// Quotes one word for a POSIX shell: bare when it only has characters no shell treats
/// specially, otherwise in single quotes, where only `'` itself needs care (POSIX.1-2017 XCU
/// § 2.2.2).
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ',' | '=' | ':' | '+')
        });
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A PCI device passed through to the VM with VFIO: an SR-IOV VF the daemon prepared (bound
/// to vfio-pci, MAC and VLAN set on its PF). The guest drives the hardware itself; there is no
/// vhost-user socket and no shared memory requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfioNic {
    /// The VIF id, used as the VMM's device id.
    pub id: String,
    /// The VF's PCI address, `DDDD:BB:DD.F` as sysfs names it.
    pub host: String,
}

impl VfioNic {
    fn check(&self, vmm: &'static str) -> Result<(), ArgsError> {
        if self.id.is_empty() || self.id.contains([',', '=']) {
            return Err(ArgsError::BadId {
                vif: self.id.clone(),
                vmm,
                id: self.id.clone(),
            });
        }
        // Hex digits, ':' and '.' only: nothing an option parser or a path could split on.
        let pci_like = self.host.len() >= 12
            && self
                .host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        if !pci_like {
            return Err(ArgsError::BadPciAddress {
                vif: self.id.clone(),
                host: self.host.clone(),
            });
        }
        Ok(())
    }
}

/// `-device vfio-pci,host=BDF,id=ID` (QEMU docs/devel/vfio-iommufd.rst, `hw/vfio/pci.c`).
pub fn qemu_vfio_args(nic: &VfioNic) -> Result<Vec<String>, ArgsError> {
    nic.check("QEMU")?;
    Ok(vec![
        "-device".into(),
        format!("vfio-pci,host={},id={}", nic.host, nic.id),
    ])
}

/// `--device path=/sys/bus/pci/devices/BDF/,id=ID` (Cloud Hypervisor docs/vfio.md).
pub fn cloud_hypervisor_vfio_args(nic: &VfioNic) -> Result<Vec<String>, ArgsError> {
    nic.check("Cloud Hypervisor")?;
    Ok(vec![
        "--device".into(),
        format!("path=/sys/bus/pci/devices/{}/,id={}", nic.host, nic.id),
    ])
}

fn check_id(nic: &VhostUserNic, vmm: &'static str) -> Result<(), ArgsError> {
    if nic.id.is_empty() || nic.id.contains([',', '=']) {
        return Err(ArgsError::BadId {
            vif: nic.id.clone(),
            vmm,
            id: nic.id.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic(mode: DaemonMode, queue_pairs: u16) -> VhostUserNic {
        VhostUserNic {
            id: "vif0".into(),
            socket: "/run/vif/vif0.sock".into(),
            mac: MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            mtu: 1500,
            queue_pairs,
            queue_size: 256,
            daemon_mode: mode,
        }
    }

    #[test]
    fn qemu_single_queue_server() {
        let args = qemu_nic_args(&nic(DaemonMode::Server, 1), &QemuOptions::default()).unwrap();
        assert_eq!(
            args,
            [
                "-chardev",
                "socket,id=chr-vif0,path=/run/vif/vif0.sock",
                "-netdev",
                "vhost-user,id=net-vif0,chardev=chr-vif0",
                "-device",
                "virtio-net-pci,netdev=net-vif0,mac=52:54:00:12:34:56",
            ]
        );
    }

    #[test]
    fn qemu_multiqueue_client_mode_listens() {
        let mut n = nic(DaemonMode::Client, 4);
        n.mtu = 9000;
        n.queue_size = 1024;
        let args = qemu_nic_args(&n, &QemuOptions::default()).unwrap();
        assert_eq!(
            args[1],
            "socket,id=chr-vif0,path=/run/vif/vif0.sock,server=on,wait=off"
        );
        assert_eq!(args[3], "vhost-user,id=net-vif0,chardev=chr-vif0,queues=4");
        assert_eq!(
            args[5],
            "virtio-net-pci,netdev=net-vif0,mac=52:54:00:12:34:56,mq=on,vectors=10,\
             host_mtu=9000,rx_queue_size=1024,tx_queue_size=1024"
        );
    }

    #[test]
    fn qemu_tcg_disables_msix() {
        let opts = QemuOptions {
            kvm: false,
            ..QemuOptions::default()
        };
        for pairs in [1, 2] {
            let args = qemu_nic_args(&nic(DaemonMode::Server, pairs), &opts).unwrap();
            assert!(args[5].ends_with(",vectors=0"), "{}", args[5]);
            assert_eq!(args[5].matches("vectors=").count(), 1);
        }
    }

    #[test]
    fn qemu_reconnect_and_comma_escape() {
        let mut n = nic(DaemonMode::Server, 1);
        n.socket = "/tmp/a,b.sock".into();
        let opts = QemuOptions {
            reconnect_secs: Some(1),
            ..QemuOptions::default()
        };
        let args = qemu_nic_args(&n, &opts).unwrap();
        assert_eq!(
            args[1],
            "socket,id=chr-vif0,path=/tmp/a,,b.sock,reconnect=1"
        );
    }

    #[test]
    fn qemu_memory_is_shared_memfd() {
        let args = qemu_args(&[nic(DaemonMode::Server, 1)], &QemuOptions::default()).unwrap();
        assert_eq!(
            &args[..6],
            [
                "-m",
                "1024M",
                "-object",
                "memory-backend-memfd,id=mem,size=1024M,share=on",
                "-numa",
                "node,memdev=mem"
            ]
        );
        assert_eq!(args.len(), 12);
    }

    #[test]
    fn qemu_refuses_queue_size_it_cannot_program() {
        let mut n = nic(DaemonMode::Server, 1);
        n.queue_size = 128;
        assert_eq!(
            qemu_nic_args(&n, &QemuOptions::default()),
            Err(ArgsError::QemuQueueSize {
                vif: "vif0".into(),
                queue_size: 128,
                min: 256,
                max: 1024
            })
        );
    }

    #[test]
    fn cloud_hypervisor_modes_are_mirrored() {
        let args = cloud_hypervisor_nic_args(&nic(DaemonMode::Server, 2)).unwrap();
        assert_eq!(
            args,
            [
                "--net",
                "vhost_user=true,socket=/run/vif/vif0.sock,num_queues=4,queue_size=256,\
                 vhost_mode=client,mac=52:54:00:12:34:56"
            ]
        );
        let mut n = nic(DaemonMode::Client, 1);
        n.mtu = 9000;
        let args = cloud_hypervisor_nic_args(&n).unwrap();
        assert!(args[1].contains(",vhost_mode=server,"));
        assert!(args[1].ends_with(",mtu=9000"));
    }

    #[test]
    fn cloud_hypervisor_full_line() {
        let mut second = nic(DaemonMode::Server, 1);
        second.id = "vif1".into();
        second.socket = "/run/vif/vif1.sock".into();
        let args = cloud_hypervisor_args(
            &[nic(DaemonMode::Server, 1), second],
            &CloudHypervisorOptions::default(),
        )
        .unwrap();
        assert_eq!(args[..3], ["--memory", "size=1024M,shared=on", "--net"]);
        assert_eq!(args.len(), 5);
        assert!(args[4].contains("socket=/run/vif/vif1.sock"));
    }

    #[test]
    fn cloud_hypervisor_refuses_comma_path() {
        let mut n = nic(DaemonMode::Server, 1);
        n.socket = "/tmp/a,b".into();
        assert!(matches!(
            cloud_hypervisor_nic_args(&n),
            Err(ArgsError::CommaInPath { .. })
        ));
    }

    #[test]
    fn bad_ids_refused() {
        let mut n = nic(DaemonMode::Server, 1);
        n.id = "a,b".into();
        assert!(matches!(
            qemu_nic_args(&n, &QemuOptions::default()),
            Err(ArgsError::BadId { .. })
        ));
        assert!(cloud_hypervisor_nic_args(&n).is_err());
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("-device"), "-device");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(
            shell_line(&["qemu", "-netdev", "id=x,chardev=c", "/tmp/my dir"]),
            "qemu -netdev id=x,chardev=c '/tmp/my dir'"
        );
    }
    #[test]
    fn vfio_device_args() {
        let nic = VfioNic {
            id: "db-1".into(),
            host: "0000:3b:02.3".into(),
        };
        assert_eq!(
            qemu_vfio_args(&nic).unwrap(),
            ["-device", "vfio-pci,host=0000:3b:02.3,id=db-1"]
        );
        assert_eq!(
            cloud_hypervisor_vfio_args(&nic).unwrap(),
            [
                "--device",
                "path=/sys/bus/pci/devices/0000:3b:02.3/,id=db-1"
            ]
        );
        let bad_host = VfioNic {
            host: "0000:3b:02.3,x=1".into(),
            ..nic.clone()
        };
        assert!(matches!(
            qemu_vfio_args(&bad_host),
            Err(ArgsError::BadPciAddress { .. })
        ));
        let bad_id = VfioNic {
            id: "a,b".into(),
            ..nic
        };
        assert!(matches!(
            cloud_hypervisor_vfio_args(&bad_id),
            Err(ArgsError::BadId { .. })
        ));
    }
}
