//! The sysfs side of SR-IOV: finding a PF's VFs and moving a VF between its host driver and
//! vfio-pci.
//!
//! Everything goes through a configurable root (`/sys` in production, a tree built under a
//! temporary directory in tests), and only through these paths (Linux
//! `Documentation/ABI/testing/sysfs-bus-pci`, `Documentation/PCI/pci-iov-howto.rst`):
//!
//! - `class/net/<pf>/ifindex`; `class/net/<pf>/device` → the PF's PCI device directory;
//! - `<pf device>/sriov_totalvfs`, `sriov_numvfs`, `virtfn<N>` → `../<VF BDF>`;
//! - `bus/pci/devices/<BDF>/driver` → `…/drivers/<name>`, `driver_override`, `net/<ifname>`;
//! - `bus/pci/devices/<BDF>/driver/unbind`, `bus/pci/drivers_probe`, `bus/pci/drivers/vfio-pci`.
//!
//! Handing a VF to vfio-pci is the kernel's documented sequence (`Documentation/driver-api/
//! vfio.rst`, "VFIO Usage Example"): write `vfio-pci` to `driver_override`, unbind the current
//! driver, write the BDF to `drivers_probe`. Handing it back clears `driver_override` (a newline
//! clears it, `driver_override_store`), unbinds vfio-pci and probes again, so the host driver
//! (e.g. iavf, mlx5_core) takes it.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The driver that hands a device to a VMM.
pub const VFIO_PCI: &str = "vfio-pci";

/// A PCI address, `DDDD:BB:DD.F` (domain, bus, device, function), as sysfs names devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    /// 16 bits on most hosts; Intel VMD domains use more (`10000:…`), hence 32.
    pub domain: u32,
    pub bus: u8,
    /// 0..=0x1f.
    pub device: u8,
    /// 0..=7.
    pub function: u8,
}

/// Why a string is not a PCI address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a PCI address (DDDD:BB:DD.F, device <= 1f, function <= 7)")]
pub struct PciAddressError {
    pub text: String,
}

impl FromStr for PciAddress {
    type Err = PciAddressError;

    fn from_str(text: &str) -> Result<PciAddress, PciAddressError> {
        let error = || PciAddressError {
            text: text.to_owned(),
        };
        let hex = |s: &str, max_len: usize| {
            if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(error());
            }
            u32::from_str_radix(s, 16).map_err(|_| error())
        };
        let (domain, rest) = text.split_once(':').ok_or_else(error)?;
        let (bus, rest) = rest.split_once(':').ok_or_else(error)?;
        let (device, function) = rest.split_once('.').ok_or_else(error)?;
        let address = PciAddress {
            domain: hex(domain, 8)?,
            bus: u8::try_from(hex(bus, 2)?).map_err(|_| error())?,
            device: u8::try_from(hex(device, 2)?).map_err(|_| error())?,
            function: u8::try_from(hex(function, 1)?).map_err(|_| error())?,
        };
        if address.device > 0x1f || address.function > 7 {
            return Err(error());
        }
        Ok(address)
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// Why a sysfs step failed. Messages name the file, so an operator can look at it.
#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    #[error("interface {pf} not found (no {path})")]
    NoInterface { pf: String, path: PathBuf },
    #[error("interface {pf} has no SR-IOV capability (no {path})")]
    NoSriov { pf: String, path: PathBuf },
    #[error(
        "interface {pf} has SR-IOV but no VF enabled (sriov_numvfs is 0; \
         echo N > {path} with N <= {total})"
    )]
    NoVfsEnabled {
        pf: String,
        path: PathBuf,
        total: u16,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {value:?} is not {expected}")]
    Parse {
        path: PathBuf,
        value: String,
        expected: &'static str,
    },
    #[error("{path} points to {target:?}, not a PCI address: {source}")]
    BadLink {
        path: PathBuf,
        target: PathBuf,
        #[source]
        source: PciAddressError,
    },
    #[error("the vfio-pci driver is not loaded (no {path}); run `modprobe vfio-pci`")]
    NoVfioDriver { path: PathBuf },
}

/// One VF of a PF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfSlot {
    /// `N` of `virtfnN`: the VF number rtnetlink takes.
    pub index: u16,
    pub bdf: PciAddress,
    /// The bound driver's name, if any.
    pub driver: Option<String>,
    /// `driver_override`, if set.
    pub driver_override: Option<String>,
}

impl VfSlot {
    /// True when the VF is bound to, or reserved for, vfio-pci: some VMM has it.
    pub fn is_with_vfio(&self) -> bool {
        self.driver.as_deref() == Some(VFIO_PCI)
            || self.driver_override.as_deref() == Some(VFIO_PCI)
    }
}

/// A PF as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfInfo {
    pub name: String,
    pub ifindex: i32,
    pub total_vfs: u16,
    pub vfs: Vec<VfSlot>,
}

/// sysfs, under a configurable root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysfs {
    root: PathBuf,
}

fn read_trimmed(path: &Path) -> Result<String, SysfsError> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| SysfsError::Read {
            path: path.to_owned(),
            source,
        })
}

fn parse_number<T: FromStr>(path: &Path, expected: &'static str) -> Result<T, SysfsError> {
    let value = read_trimmed(path)?;
    value.parse().map_err(|_| SysfsError::Parse {
        path: path.to_owned(),
        value,
        expected,
    })
}

/// Writes `value` in one `write(2)`, as sysfs attributes require, opening the file as a
/// shell's `echo VALUE > FILE` does (`O_WRONLY|O_TRUNC`, never creating it).
fn write_attr(path: &Path, value: &str) -> Result<(), SysfsError> {
    use std::io::Write;
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut file| file.write_all(value.as_bytes()))
        .map_err(|source| SysfsError::Write {
            path: path.to_owned(),
            value: value.to_owned(),
            source,
        })
}

/// The last component of a symlink's target (`../../bus/pci/drivers/iavf` → `iavf`).
fn link_name(path: &Path) -> Result<Option<String>, SysfsError> {
    match fs::read_link(path) {
        Ok(target) => Ok(target
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SysfsError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

impl Sysfs {
    /// sysfs at `root` (normally `/sys`).
    pub fn new(root: impl Into<PathBuf>) -> Sysfs {
        Sysfs { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn net(&self, pf: &str) -> PathBuf {
        self.root.join("class/net").join(pf)
    }

    /// The PCI device directory of `bdf`.
    pub fn device_dir(&self, bdf: PciAddress) -> PathBuf {
        self.root.join("bus/pci/devices").join(bdf.to_string())
    }

    /// The PF `pf` and its enabled VFs. Fails plainly when `pf` is missing, is not SR-IOV
    /// capable, or has no VF enabled.
    pub fn pf(&self, pf: &str) -> Result<PfInfo, SysfsError> {
        // `pf` was checked as an interface name by the model (no '/', no "..").
        let net = self.net(pf);
        if !net.exists() {
            return Err(SysfsError::NoInterface {
                pf: pf.to_owned(),
                path: net,
            });
        }
        let device = net.join("device");
        let total_path = device.join("sriov_totalvfs");
        if !total_path.exists() {
            return Err(SysfsError::NoSriov {
                pf: pf.to_owned(),
                path: total_path,
            });
        }
        let total_vfs: u16 = parse_number(&total_path, "a VF count")?;
        let num_path = device.join("sriov_numvfs");
        let num_vfs: u16 = parse_number(&num_path, "a VF count")?;
        if num_vfs == 0 {
            return Err(SysfsError::NoVfsEnabled {
                pf: pf.to_owned(),
                path: num_path,
                total: total_vfs,
            });
        }
        let ifindex = parse_number(&net.join("ifindex"), "an interface index")?;
        let mut vfs = Vec::with_capacity(usize::from(num_vfs));
        for index in 0..num_vfs {
            let link = device.join(format!("virtfn{index}"));
            let target = fs::read_link(&link).map_err(|source| SysfsError::Read {
                path: link.clone(),
                source,
            })?;
            let name = target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let bdf = name.parse().map_err(|source| SysfsError::BadLink {
                path: link.clone(),
                target: target.clone(),
                source,
            })?;
            vfs.push(self.vf_slot(index, bdf)?);
        }
        Ok(PfInfo {
            name: pf.to_owned(),
            ifindex,
            total_vfs,
            vfs,
        })
    }

    /// The driver state of VF `index` at `bdf`.
    pub fn vf_slot(&self, index: u16, bdf: PciAddress) -> Result<VfSlot, SysfsError> {
        let dir = self.device_dir(bdf);
        let driver = link_name(&dir.join("driver"))?;
        let override_path = dir.join("driver_override");
        let driver_override = match fs::read_to_string(&override_path) {
            // The kernel shows an unset override as "(null)".
            Ok(text) => Some(text.trim().to_owned()).filter(|t| !t.is_empty() && t != "(null)"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(SysfsError::Read {
                    path: override_path,
                    source,
                })
            }
        };
        Ok(VfSlot {
            index,
            bdf,
            driver,
            driver_override,
        })
    }

    /// The host network interfaces of the device at `bdf` (empty while vfio-pci has it).
    pub fn netdevs(&self, bdf: PciAddress) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.device_dir(bdf).join("net"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Fails unless the vfio-pci driver is registered.
    pub fn check_vfio_loaded(&self) -> Result<(), SysfsError> {
        let path = self.root.join("bus/pci/drivers").join(VFIO_PCI);
        if path.exists() {
            Ok(())
        } else {
            Err(SysfsError::NoVfioDriver { path })
        }
    }

    /// Hands the device at `bdf` to vfio-pci. Returns the driver it was bound to before.
    pub fn bind_vfio(&self, bdf: PciAddress) -> Result<Option<String>, SysfsError> {
        self.check_vfio_loaded()?;
        let dir = self.device_dir(bdf);
        let previous = link_name(&dir.join("driver"))?;
        write_attr(&dir.join("driver_override"), VFIO_PCI)?;
        if previous.is_some() && previous.as_deref() != Some(VFIO_PCI) {
            write_attr(&dir.join("driver/unbind"), &bdf.to_string())?;
        }
        if previous.as_deref() != Some(VFIO_PCI) {
            write_attr(&self.root.join("bus/pci/drivers_probe"), &bdf.to_string())?;
        }
        Ok(previous)
    }

    /// Hands the device at `bdf` back to its host driver: clears `driver_override`, unbinds
    /// vfio-pci if it has the device, and probes so the default driver binds.
    pub fn release_to_host(&self, bdf: PciAddress) -> Result<(), SysfsError> {
        let dir = self.device_dir(bdf);
        write_attr(&dir.join("driver_override"), "\n")?;
        if link_name(&dir.join("driver"))?.as_deref() == Some(VFIO_PCI) {
            write_attr(&dir.join("driver/unbind"), &bdf.to_string())?;
        }
        write_attr(&self.root.join("bus/pci/drivers_probe"), &bdf.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pci_address_round_trips_and_rejects() {
        let bdf: PciAddress = "0000:3b:02.1".parse().unwrap();
        assert_eq!(
            bdf,
            PciAddress {
                domain: 0,
                bus: 0x3b,
                device: 2,
                function: 1
            }
        );
        assert_eq!(bdf.to_string(), "0000:3b:02.1");
        assert_eq!(
            "10000:00:1f.7".parse::<PciAddress>().unwrap().to_string(),
            "10000:00:1f.7"
        );
        for bad in [
            "",
            "0000:3b:02",
            "0000:3b:20.0",
            "0000:3b:02.8",
            "0000:3b:2g.0",
            "0000:100:02.0",
            "x:3b:02.0",
            "0000:3b:02.0.1",
            "+000:3b:02.0",
        ] {
            assert!(bad.parse::<PciAddress>().is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn pci_address_display_parses_back(
            domain in 0u32..0x10000, bus: u8, device in 0u8..0x20, function in 0u8..8
        ) {
            let bdf = PciAddress { domain, bus, device, function };
            prop_assert_eq!(bdf.to_string().parse::<PciAddress>(), Ok(bdf));
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,20}") {
            let _ = text.parse::<PciAddress>();
        }
    }
}
