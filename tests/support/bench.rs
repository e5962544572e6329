//! What the benchmarks (`runtime/cli/benches/`) share: a process's CPU time, the SIPp binary, lists from
//! the environment.

use std::process::Command;

/// User + system CPU ticks of a process, from `/proc/<pid>/stat` (fields 14 and 15).
pub fn cpu_ticks(pid: u32) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
    let after = text.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(14) + field(15)
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 when unknown).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// The SIPp binary: `$SIPP`, else `sipp` from PATH.
pub fn sipp_program() -> std::ffi::OsString {
    std::env::var_os("SIPP").unwrap_or_else(|| "sipp".into())
}

/// A comma-separated list of numbers from environment variable `name`; `None` when unset or empty.
pub fn env_list(name: &str) -> Option<Vec<u32>> {
    let value = std::env::var(name).ok()?;
    let list: Vec<u32> = value.split(',').filter_map(|v| v.trim().parse().ok()).collect();
    (!list.is_empty()).then_some(list)
}
