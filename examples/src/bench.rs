//! Benchmark helpers: peak memory and timing.

use std::time::Instant;

/// Peak resident memory in MiB of this process and of the worker processes `pids`
/// (the sum of their `VmHWM`), so that a run's figure covers every process.
pub fn peak_rss_mib_with(pids: &[u32]) -> f64 {
    peak_rss_mib()
        + pids
            .iter()
            .map(|p| vm_hwm_mib(&format!("/proc/{p}/status")))
            .sum::<f64>()
}

/// Peak resident memory of this process in MiB (`VmHWM` from `/proc/self/status`).
pub fn peak_rss_mib() -> f64 {
    vm_hwm_mib("/proc/self/status")
}

/// Starts this process's peak resident memory again from what it holds now
/// (writes `5` to `/proc/self/clear_refs`), so that a later [`peak_rss_mib`]
/// measures one phase; `false` where the kernel does not allow it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Resident memory of this process now, in MiB (`VmRSS`).
pub fn rss_mib() -> f64 {
    status_mib("/proc/self/status", "VmRSS:")
}

fn vm_hwm_mib(path: &str) -> f64 {
    status_mib(path, "VmHWM:")
}

/// A `kB` field of a `/proc/.../status` file, in MiB (0 when unreadable).
fn status_mib(path: &str, field: &str) -> f64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds (user and system) used so far by this process's threads named
/// `name` (as the kernel shows it: the first 15 bytes), from
/// `/proc/self/task/*/stat`; 0 when there is none.
pub fn thread_cpu_s(name: &str) -> f64 {
    let shown = &name[..name.len().min(15)];
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let ticks: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|stat| {
            let (comm, ticks) = cpu_ticks(&stat)?;
            (comm == shown).then_some(ticks)
        })
        .sum();
    ticks as f64 / clock_ticks_per_s()
}

/// CPU seconds (user and system) used so far by this whole process.
pub fn process_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| cpu_ticks(&stat).map(|(_, ticks)| ticks))
        .map_or(0.0, |ticks| ticks as f64 / clock_ticks_per_s())
}

/// The name and the user plus system clock ticks of a `/proc/.../stat` line
/// ("pid (comm) state ...": the name may hold spaces, so it ends at the last
/// ')'; utime and stime are the 12th and 13th fields after it).
fn cpu_ticks(stat: &str) -> Option<(&str, u64)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// The kernel's clock ticks per second for `/proc` times.
fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf reads a constant of the system; no memory is touched.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Seconds taken by `f`, and its result.
pub fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let v = f();
    (t.elapsed().as_secs_f64(), v)
}

/// Best wall time of `runs` runs of `f`, in seconds.
pub fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> f64 {
    (0..runs.max(1))
        .map(|_| timed(&mut f).0)
        .fold(f64::INFINITY, f64::min)
}
