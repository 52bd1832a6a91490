//! The machine around a measurement: which CPU each thread runs on, and how busy everyone else
//! was while we measured.
//!
//! The root package has no `libc` dependency, so threads are pinned with util-linux `taskset -p`
//! on their TIDs (read from `/proc/self/task`), and CPU time is read from `/proc`: the whole box
//! from `/proc/stat`, processes from `/proc/PID/stat` (`utime + stime`, in clock ticks).
//!
//! "Others" in the report is the CPU the rest of the machine used during the window: busy ticks
//! of all CPUs minus those of the bench process and of the testpmd process groups it started,
//! in CPUs (0 to 2 on this box). A figure with others ≳ 0.2 CPU was taken on a shared box and is
//! marked as such; frames only move while both ends of a ring are on-CPU, so contention hurts
//! far more than its CPU share suggests (see /work/shared/rigs/ovs-dpdk/RESULTS.md).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// This thread's id, from the `/proc/thread-self` link (`PID/task/TID`).
pub fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Every thread of this process.
pub fn thread_ids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Pins thread `tid` to `cpu`; `false` if `taskset` is missing or refused (reported, not fatal:
/// an unpinned figure is still a figure, and the report says so).
pub fn pin(tid: u32, cpu: u32) -> bool {
    Command::new("taskset")
        .args(["-p", "-c", &cpu.to_string(), &tid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Pins this thread to `own_cpu` and every other thread of the process to `rest_cpu`.
pub fn pin_process(own_cpu: u32, rest_cpu: u32) -> bool {
    let me = current_tid();
    let mut ok = true;
    for tid in thread_ids() {
        let cpu = if Some(tid) == me { own_cpu } else { rest_cpu };
        ok &= pin(tid, cpu);
    }
    ok
}

/// Undoes [`pin_process`] between scenarios: every thread may run anywhere again.
pub fn unpin_process() {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .map(|text| text.trim().to_owned())
        .unwrap_or_else(|_| "0-1".to_owned());
    for tid in thread_ids() {
        let _ = Command::new("taskset")
            .args(["-p", "-c", &online, &tid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`; 100 on Linux/x86 anyway).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The 1-minute load average.
pub fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// CPU ticks at one instant: the machine's busy ticks and ours.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    at: Instant,
    busy: u64,
    ours: u64,
}

/// CPU use over a window, in CPUs.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    /// The bench process and its testpmds.
    pub ours: f64,
    /// Everything else on the machine.
    pub others: f64,
}

impl CpuSample {
    /// Samples now; `groups` are the process groups of our testpmds.
    pub fn take(groups: &[u32]) -> CpuSample {
        let at = Instant::now();
        let busy = machine_busy_ticks().unwrap_or(0);
        let mut ours = process_ticks(Path::new("/proc/self/stat")).unwrap_or(0);
        if !groups.is_empty() {
            ours += group_ticks(groups);
        }
        CpuSample { at, busy, ours }
    }

    /// Use between `self` and `later`.
    pub fn until(&self, later: &CpuSample, ticks_per_sec: f64) -> CpuUse {
        let secs = later.at.duration_since(self.at).as_secs_f64();
        if secs <= 0.0 {
            return CpuUse::default();
        }
        let busy = later.busy.saturating_sub(self.busy) as f64;
        let ours = later.ours.saturating_sub(self.ours) as f64;
        CpuUse {
            ours: ours / ticks_per_sec / secs,
            others: (busy - ours).max(0.0) / ticks_per_sec / secs,
        }
    }
}

/// user + nice + system + irq + softirq + steal of the `cpu` line (idle and iowait excluded;
/// guest time is already inside user).
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    Some(get(0) + get(1) + get(2) + get(5) + get(6) + get(7))
}

/// Fields of `/proc/PID/stat` after the command name (which may hold spaces and parentheses).
fn stat_fields(text: &str) -> Option<Vec<&str>> {
    let close = text.rfind(')')?;
    Some(text.get(close + 1..)?.split_whitespace().collect())
}

/// utime + stime of one process (fields 14 and 15 of proc(5), 12 and 13 after the name).
fn process_ticks(stat: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(stat).ok()?;
    let fields = stat_fields(&text)?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// utime + stime of every process whose process group (field 5, 3 after the name) is in
/// `groups`.
fn group_ticks(groups: &[u32]) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let stat = Path::new("/proc").join(pid).join("stat");
        let Ok(text) = std::fs::read_to_string(&stat) else {
            continue;
        };
        let in_group = stat_fields(&text)
            .and_then(|f| f.get(2)?.parse::<u32>().ok())
            .is_some_and(|pgrp| groups.contains(&pgrp));
        if in_group {
            total += process_ticks(&stat).unwrap_or(0);
        }
    }
    total
}
