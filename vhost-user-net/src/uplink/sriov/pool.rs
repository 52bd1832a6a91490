//! Which VF belongs to whom: choosing a free VF, and the state file that outlives a crash.
//!
//! # Ownership rule
//! A VF is *free* when this daemon has not allocated it and nobody has handed it to vfio-pci
//! (`driver` and `driver_override` both not `vfio-pci`). So two daemons (or a daemon and an
//! operator's manual `vfio-pci` binding) never take the same VF: one that is with vfio-pci
//! belongs to some VMM.
//!
//! # The state file, and garbage collection at start
//! A daemon records every allocation in `<run dir>/sriov-vfs.state`, *before* it touches the VF
//! (write-ahead: written to a temporary file, `fsync`ed and renamed over the old one, so a crash
//! leaves either the old or the new list, never half a line). Each line is one VF:
//!
//! ```text
//! vif=web-1 pf=eth0 vf=3 bdf=0000:3b:02.3 driver=iavf set=vlan,trust,rate
//! ```
//!
//! (`driver` is the host driver before vfio-pci, `-` if none; `set` lists the optional settings
//! vif applied, so a release resets exactly those: a driver without a trust knob refuses a
//! request that mentions trust.) The daemon holds an exclusive `flock` on `sriov-vfs.lock` for its
//! lifetime. A daemon that takes the lock therefore knows that every record in the file belongs
//! to a dead daemon: it keeps the records of VIFs it is configured with again (the VM may still
//! be running on that VF, so the VF is re-adopted, not reset) and releases the others (clear the
//! MAC and settings, give the VF back to its host driver). A second daemon on the same run dir
//! fails at once instead of fighting over the file.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::sysfs::{PciAddress, PfInfo, VfSlot};

pub const STATE_FILE: &str = "sriov-vfs.state";
pub const LOCK_FILE: &str = "sriov-vfs.lock";

/// Why a VF cannot be allocated or the state cannot be kept.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("interface {pf}: vf_index {vf} is out of range (sriov_numvfs is {num_vfs})")]
    VfIndexOutOfRange { pf: String, vf: u16, num_vfs: usize },
    #[error("interface {pf}: VF {vf} is already allocated to vif {owner}")]
    VfTaken { pf: String, vf: u16, owner: String },
    #[error("interface {pf}: VF {vf} ({bdf}) is with vfio-pci already: another VMM has it")]
    VfWithVfio {
        pf: String,
        vf: u16,
        bdf: PciAddress,
    },
    #[error("interface {pf}: all {num_vfs} VFs are in use")]
    Exhausted { pf: String, num_vfs: usize },
    #[error("cannot create the run directory {path}: {source}")]
    RunDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is locked: another vhost-user-net daemon uses this run directory")]
    Locked { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One allocation, as the state file keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfRecord {
    pub vif: String,
    pub pf: String,
    pub vf: u16,
    pub bdf: PciAddress,
    /// The host driver before vfio-pci.
    pub driver: Option<String>,
    pub set_vlan: bool,
    pub set_trust: bool,
    pub set_rate: bool,
}

impl VfRecord {
    /// The record as one state-file line (without the newline).
    pub fn to_line(&self) -> String {
        let mut line = format!(
            "vif={} pf={} vf={} bdf={} driver={}",
            self.vif,
            self.pf,
            self.vf,
            self.bdf,
            self.driver.as_deref().unwrap_or("-")
        );
        let set: Vec<&str> = [
            (self.set_vlan, "vlan"),
            (self.set_trust, "trust"),
            (self.set_rate, "rate"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        let _ = write!(line, " set={}", set.join(","));
        line
    }

    /// Parses a line written by [`VfRecord::to_line`]; `None` for anything else.
    pub fn parse_line(line: &str) -> Option<VfRecord> {
        let mut vif = None;
        let mut pf = None;
        let mut vf = None;
        let mut bdf = None;
        let mut driver = None;
        let mut set = None;
        for field in line.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            let slot = match key {
                "vif" => &mut vif,
                "pf" => &mut pf,
                "vf" => &mut vf,
                "bdf" => &mut bdf,
                "driver" => &mut driver,
                "set" => &mut set,
                _ => return None,
            };
            if slot.replace(value).is_some() {
                return None; // a key twice
            }
        }
        let set = set?;
        let flags: Vec<&str> = set.split(',').filter(|s| !s.is_empty()).collect();
        if flags
            .iter()
            .any(|f| !matches!(*f, "vlan" | "trust" | "rate"))
        {
            return None;
        }
        let (vif, pf) = (vif?, pf?);
        if vif.is_empty() || pf.is_empty() {
            return None;
        }
        Some(VfRecord {
            vif: vif.to_owned(),
            pf: pf.to_owned(),
            vf: vf?.parse().ok()?,
            bdf: bdf?.parse().ok()?,
            driver: Some(driver?).filter(|d| *d != "-").map(str::to_owned),
            set_vlan: flags.contains(&"vlan"),
            set_trust: flags.contains(&"trust"),
            set_rate: flags.contains(&"rate"),
        })
    }
}

/// Picks the VF for a VIF on `pf`: `requested`, or the lowest-numbered free one. `owner_of`
/// says which VIF of this daemon holds a VF already.
pub fn choose_vf(
    pf: &PfInfo,
    requested: Option<u16>,
    owner_of: impl Fn(u16) -> Option<String>,
) -> Result<&VfSlot, PoolError> {
    let num_vfs = pf.vfs.len();
    match requested {
        Some(vf) => {
            let slot = pf.vfs.iter().find(|slot| slot.index == vf).ok_or_else(|| {
                PoolError::VfIndexOutOfRange {
                    pf: pf.name.clone(),
                    vf,
                    num_vfs,
                }
            })?;
            if let Some(owner) = owner_of(vf) {
                return Err(PoolError::VfTaken {
                    pf: pf.name.clone(),
                    vf,
                    owner,
                });
            }
            if slot.is_with_vfio() {
                return Err(PoolError::VfWithVfio {
                    pf: pf.name.clone(),
                    vf,
                    bdf: slot.bdf,
                });
            }
            Ok(slot)
        }
        None => pf
            .vfs
            .iter()
            .find(|slot| owner_of(slot.index).is_none() && !slot.is_with_vfio())
            .ok_or_else(|| PoolError::Exhausted {
                pf: pf.name.clone(),
                num_vfs,
            }),
    }
}

/// The state file and its lock, held for the daemon's lifetime.
pub struct StateFile {
    path: PathBuf,
    /// Holds the `flock`; closing it releases the lock.
    _lock: File,
    records: Vec<VfRecord>,
}

impl StateFile {
    /// Takes the lock in `run_dir` and reads what a previous daemon left. Returns the file
    /// (with no records yet) and the stale records, for the caller to re-adopt or release.
    pub fn open(run_dir: &Path) -> Result<(StateFile, Vec<VfRecord>), PoolError> {
        fs::create_dir_all(run_dir).map_err(|source| PoolError::RunDir {
            path: run_dir.to_owned(),
            source,
        })?;
        let lock_path = run_dir.join(LOCK_FILE);
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| PoolError::Open {
                path: lock_path.clone(),
                source,
            })?;
        // SAFETY: flock(2) on a descriptor `lock` owns; no memory is passed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let source = io::Error::last_os_error();
            return Err(if source.kind() == io::ErrorKind::WouldBlock {
                PoolError::Locked { path: lock_path }
            } else {
                PoolError::Open {
                    path: lock_path,
                    source,
                }
            });
        }
        let path = run_dir.join(STATE_FILE);
        let stale = match fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .filter(|line| !line.trim().is_empty())
                .filter_map(|line| {
                    let record = VfRecord::parse_line(line);
                    if record.is_none() {
                        log::warn!("{}: ignoring unreadable line {line:?}", path.display());
                    }
                    record
                })
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(PoolError::Open { path, source }),
        };
        let state = StateFile {
            path,
            _lock: lock,
            // Stale records stay on disk until they are re-adopted or released.
            records: stale.clone(),
        };
        Ok((state, stale))
    }

    pub fn records(&self) -> &[VfRecord] {
        &self.records
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The VIF holding VF `vf` of `pf`, if any record says so.
    pub fn owner_of(&self, pf: &str, vf: u16) -> Option<&VfRecord> {
        self.records.iter().find(|r| r.pf == pf && r.vf == vf)
    }

    /// Adds (or replaces, for the same VIF) a record and persists it.
    pub fn insert(&mut self, record: VfRecord) -> Result<(), PoolError> {
        self.records.retain(|r| r.vif != record.vif);
        self.records.push(record);
        self.persist()
    }

    /// Drops the record of `vif` and persists.
    pub fn remove(&mut self, vif: &str) -> Result<(), PoolError> {
        self.records.retain(|r| r.vif != vif);
        self.persist()
    }

    /// VIFs with a record, for checks.
    pub fn vifs(&self) -> BTreeSet<String> {
        self.records.iter().map(|r| r.vif.clone()).collect()
    }

    fn persist(&self) -> Result<(), PoolError> {
        let mut text = String::new();
        for record in &self.records {
            text.push_str(&record.to_line());
            text.push('\n');
        }
        let tmp = self.path.with_extension("state.tmp");
        let write = || -> io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            // The rename itself must reach the disk before the VF is touched.
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|source| PoolError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(vif: &str, vf: u16) -> VfRecord {
        VfRecord {
            vif: vif.into(),
            pf: "eth0".into(),
            vf,
            bdf: PciAddress {
                domain: 0,
                bus: 0x3b,
                device: 2,
                function: vf as u8 & 7,
            },
            driver: Some("iavf".into()),
            set_vlan: true,
            set_trust: false,
            set_rate: true,
        }
    }

    #[test]
    fn line_round_trip_and_rejects() {
        let r = record("web-1", 3);
        assert_eq!(
            r.to_line(),
            "vif=web-1 pf=eth0 vf=3 bdf=0000:3b:02.3 driver=iavf set=vlan,rate"
        );
        assert_eq!(VfRecord::parse_line(&r.to_line()), Some(r));
        let none = VfRecord {
            driver: None,
            set_vlan: false,
            set_rate: false,
            ..record("a", 0)
        };
        assert_eq!(VfRecord::parse_line(&none.to_line()), Some(none));
        for bad in [
            "",
            "vif=a pf=eth0 vf=x bdf=0000:3b:02.0 driver=- set= ",
            "vif=a pf=eth0 vf=1 bdf=0000:3b:02.0 driver=- set=bogus",
            "vif=a vif=b pf=eth0 vf=1 bdf=0000:3b:02.0 driver=- set=",
            "vif=a pf=eth0 vf=1 bdf=0000:3b:02.0 driver=- set= extra=1",
        ] {
            assert_eq!(VfRecord::parse_line(bad), None, "{bad:?}");
        }
    }

    fn pf_with(slots: &[(u16, Option<&str>)]) -> PfInfo {
        PfInfo {
            name: "eth0".into(),
            ifindex: 2,
            total_vfs: 8,
            vfs: slots
                .iter()
                .map(|&(index, driver)| VfSlot {
                    index,
                    bdf: record("x", index).bdf,
                    driver: driver.map(str::to_owned),
                    driver_override: None,
                })
                .collect(),
        }
    }

    #[test]
    fn chooses_lowest_free_vf() {
        let pf = pf_with(&[(0, Some("vfio-pci")), (1, Some("iavf")), (2, None)]);
        let owner = |vf| (vf == 1).then(|| "web-1".to_owned());
        assert_eq!(choose_vf(&pf, None, owner).unwrap().index, 2);
        assert!(matches!(
            choose_vf(&pf, Some(1), owner),
            Err(PoolError::VfTaken { vf: 1, .. })
        ));
        assert!(matches!(
            choose_vf(&pf, Some(0), |_| None),
            Err(PoolError::VfWithVfio { vf: 0, .. })
        ));
        assert!(matches!(
            choose_vf(&pf, Some(7), |_| None),
            Err(PoolError::VfIndexOutOfRange {
                vf: 7,
                num_vfs: 3,
                ..
            })
        ));
        let full = |vf| (vf != 0).then(|| "other".to_owned());
        assert!(matches!(
            choose_vf(&pf, None, full),
            Err(PoolError::Exhausted { num_vfs: 3, .. })
        ));
    }

    #[test]
    fn state_survives_reopen_and_lock_excludes() {
        let dir = std::env::temp_dir().join(format!("vif-pool-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        {
            let (mut state, stale) = StateFile::open(&dir).unwrap();
            assert!(stale.is_empty());
            state.insert(record("a", 1)).unwrap();
            state.insert(record("b", 2)).unwrap();
            state.remove("a").unwrap();
            assert!(matches!(
                StateFile::open(&dir),
                Err(PoolError::Locked { .. })
            ));
        }
        let (state, stale) = StateFile::open(&dir).unwrap();
        assert_eq!(stale, vec![record("b", 2)]);
        assert_eq!(state.owner_of("eth0", 2).map(|r| r.vif.as_str()), Some("b"));
        drop(state);
        fs::remove_dir_all(&dir).unwrap();
    }

    proptest! {
        #[test]
        fn arbitrary_lines_never_panic(line in ".{0,80}") {
            if let Some(record) = VfRecord::parse_line(&line) {
                prop_assert_eq!(VfRecord::parse_line(&record.to_line()), Some(record));
            }
        }
    }
}
