//! End-to-end load benchmark: SIPp's built-in UAC (`sipp -sn uac`: INVITE, 100, 180, 200, ACK, BYE, 200)
//! against `callwright serve` running the `answer-hangup` example (one fresh wasm instance per call), and in
//! the same run against SIPp's own UAS (`sipp -sn uas`) as the reference.
//!
//! For each target the offered rate rises step by step (`CALLWRIGHT_BENCH_RATES`, calls/s, comma-separated;
//! each step lasts `CALLWRIGHT_BENCH_SECONDS`). A step is *clean* when no call failed, SIPp retransmitted
//! nothing and the achieved rate is at least 95 % of the offered one; the ramp of a target stops after its
//! first step that is not clean. The highest clean rate is the target's sustained rate. Then, after a 40 s
//! pause that lets the overload's leftovers drain, one more step runs each target at half of callwright's
//! sustained rate, for the INVITE→200 latency there.
//!
//! A second part measures blind transfers: SIPp runs `tests/sipp/uac-refer-accept.xml` (the caller that is
//! transferred: 202, NOTIFY 100, NOTIFY 200) against `serve` running the `blind-transfer` example, whose
//! hooks go to an HTTP server in this process (two event hooks and one action hook per transfer). A
//! transfer step is clean when, besides the above, every hook arrived. Rates: `CALLWRIGHT_BENCH_TRANSFER_RATES`.
//! A third part measures documents: the same call (answer, then wait for the caller's BYE) written three
//! ways on one server: the native Rust flow (`answer-hangup`), a jambonz verb array (`answer`, `pause`)
//! and an SWML document (`answer`, `sleep`), each verb run in its own instance by verb dispatch. Rates:
//! `CALLWRIGHT_BENCH_DOCUMENT_RATES`.
//! A fourth part measures languages: the `answer-hangup` example of each guest language (built from
//! source by `guest-examples/<lang>/build.sh`) uploaded to one server: its size, its compile time at
//! upload, how long the upload took to answer (and a second upload of the same bytes), and its sustained
//! calls/s beside Rust's. Rates: `CALLWRIGHT_BENCH_LANGUAGE_RATES`.
//! A fifth part measures concurrency: SIPp places `CALLWRIGHT_BENCH_CONCURRENT_CALLS` calls (default 10,000)
//! at 500/s that each stay up 30 s, so all are established at once, each with a live `answer-hangup` guest
//! waiting for its events; the resident memory of the target is read at the peak (`VmRSS`), then every
//! call must end cleanly. SIPp's own UAS holding the same calls is the reference.
//! A sixth part measures overload: answer-hangup offered past its capacity
//! (`CALLWRIGHT_BENCH_OVERLOAD_RATES`, 10 s each, a fresh server per step), once with load shedding as
//! configured by default and once with it off (`--shed-after-ms 0`), counting the calls completed, the
//! calls refused with 503 and the calls that timed out.
//! `CALLWRIGHT_BENCH_ONLY=calls`, `=transfers`, `=documents`, `=languages`, `=concurrency` or `=overload`
//! runs one part.
//!
//! Measured per step: calls completed per second (successful calls over the run's wall time, from SIPp's
//! statistics), failed calls, retransmissions, INVITE→200 response time percentiles (SIPp's `-trace_rtt`,
//! whole milliseconds) and the target's CPU time per call (user + system from `/proc/<pid>/stat`).
//! The output is Markdown tables, ready for `BENCHMARKS.md`.
//!
//! Run: `cargo bench -p callwright --bench sipp_load` (needs `sipp`, Debian package `sip-tester`).

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::bench::{clock_ticks_per_second, cpu_ticks, env_list, sipp_program};
use support::hooks::HookServer;
use support::languages::Language;
use support::sipp::read_stats;
use support::{Server, TempDir, free_port};

const DEFAULT_RATES: &[u32] = &[500, 1000, 2000, 3000, 4000, 5000, 6000, 8000];
const DEFAULT_TRANSFER_RATES: &[u32] = &[100, 200, 400, 800, 1200, 1600, 2000];
const DEFAULT_DOCUMENT_RATES: &[u32] = &[250, 500, 1000, 1500, 2000, 3000, 4000];
const DEFAULT_LANGUAGE_RATES: &[u32] = &[100, 250, 500, 1000, 1500, 2000, 3000, 4000];
const DEFAULT_OVERLOAD_RATES: &[u32] = &[5000, 6000, 8000];
/// How long each overload step offers its rate.
const OVERLOAD_SECONDS: u32 = 10;
/// Hooks the blind-transfer example posts per accepted transfer: event hooks for NOTIFY 100 and 200, the
/// action hook.
const HOOKS_PER_TRANSFER: usize = 3;
const DEFAULT_SECONDS: u32 = 5;
/// The pause between the ramps and the half-rate step (longer than 64·T1 and the call linger time).
const COOL_DOWN: Duration = Duration::from_secs(40);
/// A step is clean if it completes at least this share of the offered rate.
const CLEAN_SHARE: f64 = 0.95;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing to a harness-less bench but
    // would run it in full, so only run when asked to benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        println!("sipp_load: run with `cargo bench -p callwright --bench sipp_load`");
        return;
    }
    let seconds = env_list("CALLWRIGHT_BENCH_SECONDS").and_then(|v| v.first().copied()).unwrap_or(DEFAULT_SECONDS);
    let only = std::env::var("CALLWRIGHT_BENCH_ONLY").unwrap_or_default();
    let call_rates = (only.is_empty() || only == "calls").then(|| calls(seconds));
    if only.is_empty() || only == "transfers" {
        transfers(seconds, call_rates);
    }
    if only.is_empty() || only == "documents" {
        documents(seconds);
    }
    if only.is_empty() || only == "languages" {
        languages(seconds);
    }
    if only.is_empty() || only == "concurrency" {
        concurrency();
    }
    if only.is_empty() || only == "overload" {
        overload();
    }
}

/// answer-hangup offered past capacity, with and without load shedding; a fresh server for every step so
/// one step's leftovers do not weigh on the next.
fn overload() {
    let rates = env_list("CALLWRIGHT_BENCH_OVERLOAD_RATES").unwrap_or_else(|| DEFAULT_OVERLOAD_RATES.to_vec());
    let ticks = clock_ticks_per_second();
    println!(
        "### Overload: answer-hangup offered past capacity ({OVERLOAD_SECONDS} s per step, a fresh server each)\n"
    );
    println!(
        "| shedding | offered calls/s | completed calls/s | refused (503) | timed out | other failures | retrans. | INVITE→200 p50 / p99 / max [ms] | refused by the server's count |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (mode, args) in [("on (default)", &[][..]), ("off", &["--shed-after-ms", "0"][..])] {
        for &rate in &rates {
            let data = TempDir::new("bench-overload");
            let mut server_args = vec!["--max-calls", "20000"];
            server_args.extend_from_slice(args);
            let server = Server::start_with(&data.0, &server_args, "warn");
            server.deploy("answer-hangup", support::ANSWER_HANGUP).assert_status(201);
            server.put_app("bench", &support::serde_like::app("answer-hangup", None, "null")).assert_status(201);
            let target = Target {
                name: "callwright",
                address: server.sip.to_string(),
                pid: server.pid(),
                _process: Box::new(()),
            };
            let step = run_step(&target, &Scenario::BuiltinUac, rate, OVERLOAD_SECONDS, ticks);
            let stats: serde_json::Value =
                serde_json::from_str(&server.api("GET", "/v1/stats", b"").body).unwrap_or_default();
            let ms = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
            println!(
                "| {mode} | {rate} | {:.0} | {} | {} | {} | {} | {} / {} / {} | {} |",
                step.completed_per_s,
                step.refused,
                step.timed_out,
                step.failed - step.refused - step.timed_out,
                step.retransmissions,
                ms(step.p50_ms),
                ms(step.p99_ms),
                ms(step.max_ms),
                stats["calls_shed"]
            );
        }
    }
    println!();
}

/// The same call as a native flow, a jambonz verb array and an SWML document, on one server.
fn documents(seconds: u32) {
    let rates = env_list("CALLWRIGHT_BENCH_DOCUMENT_RATES").unwrap_or_else(|| DEFAULT_DOCUMENT_RATES.to_vec());
    let ticks = clock_ticks_per_second();
    let data = TempDir::new("bench-documents");
    let server = Server::start_with(&data.0, &["--max-calls", "20000"], "warn");
    server.deploy("answer-hangup", support::ANSWER_HANGUP).assert_status(201);
    let apps = [
        ("native", r#"{"module": "answer-hangup", "config": {"hangup_after_ms": 30000}}"#),
        ("jambonz", r#"{"verbs": [{"verb": "answer"}, {"verb": "pause", "length": 30}]}"#),
        ("swml", r#"{"swml": {"version": "1.0.0", "sections": {"main": ["answer", {"sleep": 30000}]}}}"#),
    ];
    for (user, flow) in apps {
        let app = format!(r#"{{"route": {{"to_user": "{user}"}}, "flow": {flow}}}"#);
        server.put_app(user, &app).assert_status(201);
    }
    let target =
        Target { name: "callwright", address: server.sip.to_string(), pid: server.pid(), _process: Box::new(server) };
    println!("### Documents: native Rust flow vs jambonz verb array vs SWML document (answer, wait for BYE)\n");
    let mut sustained = Vec::new();
    for (user, _) in apps {
        let (best, cpu) = ramp(&target, user, &rates, seconds, ticks);
        sustained.push((user, best, cpu));
        std::thread::sleep(COOL_DOWN);
    }
    println!("### Documents summary\n");
    println!("| flow | sustained calls/s | vs native | CPU per call at its last clean step [µs] |");
    println!("|---|---|---|---|");
    let native = sustained[0].1;
    for (user, rate, cpu) in &sustained {
        println!("| {user} | {rate:.0} | {:.2} | {cpu:.0} |", ratio(*rate, native));
    }
    println!();
}

/// Calls `user` at each of `rates` until a step is not clean; prints the steps and returns the sustained
/// rate and the CPU per call at the last clean step.
fn ramp(target: &Target, user: &'static str, rates: &[u32], seconds: u32, ticks: u64) -> (f64, f64) {
    let mut steps = Vec::new();
    for &rate in rates {
        let step = run_step(target, &Scenario::BuiltinUacTo(user), rate, seconds, ticks);
        let clean = step.is_clean();
        steps.push(step);
        if !clean {
            break;
        }
    }
    print_steps(user, &steps);
    let best = steps.iter().filter(|s| s.is_clean()).map(|s| s.completed_per_s).fold(0.0, f64::max);
    let cpu = steps.iter().rfind(|s| s.is_clean()).map_or(0.0, |s| s.cpu_us_per_call);
    (best, cpu)
}

/// The answer-hangup example in every guest language on one server: component size, compile time at
/// upload, and sustained calls/s (answer, wait for the caller's BYE), compared with Rust's.
fn languages(seconds: u32) {
    let rates = env_list("CALLWRIGHT_BENCH_LANGUAGE_RATES").unwrap_or_else(|| DEFAULT_LANGUAGE_RATES.to_vec());
    let ticks = clock_ticks_per_second();
    let data = TempDir::new("bench-languages");
    let server = Server::start_with(&data.0, &["--max-calls", "20000"], "warn");
    let mut uploads = Vec::new();
    for language in Language::ALL {
        let file = language.example("answer-hangup");
        let size = std::fs::metadata(&file).expect("built example").len();
        let started = std::time::Instant::now();
        let uploaded = server.deploy(language.dir(), &file);
        let answered_ms = started.elapsed().as_millis();
        uploaded.assert_status(201);
        let meta: serde_json::Value = serde_json::from_str(&uploaded.body).expect("module JSON");
        let again = std::time::Instant::now();
        server.deploy(&format!("{}-again", language.dir()), &file).assert_status(201);
        let again_ms = again.elapsed().as_millis();
        let app = serde_json::json!({
            "route": {"to_user": language.dir()},
            "flow": {"module": language.dir(), "config": {"hangup_after_ms": 30000}},
        });
        server.put_app(language.dir(), &app.to_string()).assert_status(201);
        uploads.push((language, size, meta["compile_ms"].as_u64().unwrap_or(0), answered_ms, again_ms));
    }
    let target =
        Target { name: "callwright", address: server.sip.to_string(), pid: server.pid(), _process: Box::new(server) };
    println!("### Languages: the answer-hangup example (answer, wait for the caller's BYE)\n");
    let mut sustained = Vec::new();
    for (language, ..) in &uploads {
        sustained.push(ramp(&target, language.dir(), &rates, seconds, ticks));
        std::thread::sleep(COOL_DOWN);
    }
    println!("### Languages summary\n");
    println!(
        "| language | component | compile at upload [ms] | upload answered [ms] | same bytes again [ms] | sustained calls/s | vs Rust | CPU per call at its last clean step [µs] |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let rust = sustained[0].0;
    for ((language, size, compile_ms, answered_ms, again_ms), (rate, cpu)) in uploads.iter().zip(&sustained) {
        println!(
            "| {language:?} | {:.0} KiB | {compile_ms} | {answered_ms} | {again_ms} | {rate:.0} | {:.2} | {cpu:.0} |",
            *size as f64 / 1024.0,
            ratio(*rate, rust)
        );
    }
    println!();
}

/// Holds many calls at once on SIPp's UAS and on callwright; prints resident memory per call.
fn concurrency() {
    let calls = env_list("CALLWRIGHT_BENCH_CONCURRENT_CALLS").and_then(|v| v.first().copied()).unwrap_or(10_000);
    let map_limit = std::fs::read_to_string("/proc/sys/vm/max_map_count").unwrap_or_default();
    println!(
        "### Concurrency: {calls} calls held at once (SIPp UAC at {CONCURRENCY_RATE}/s, each up {} s; vm.max_map_count {})\n",
        CONCURRENCY_HOLD.as_secs(),
        map_limit.trim()
    );
    println!(
        "| target | calls established | failed | live guests at the peak | RSS idle [MiB] | RSS at the peak [MiB] | per call [KiB] | memory maps at the peak | all ended after the callers' BYEs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let reference = Target::sipp_uas();
    hold_calls(&reference, calls, None);
    drop(reference);
    let data = TempDir::new("bench-concurrency");
    let max_calls = calls.to_string();
    let server = Server::start_with(&data.0, &["--max-calls", &max_calls], "warn");
    server.deploy("answer-hangup", support::ANSWER_HANGUP).assert_status(201);
    let app = support::serde_like::app("answer-hangup", None, "{\"hangup_after_ms\": 600000}");
    server.put_app("hold", &app).assert_status(201);
    let target =
        Target { name: "callwright", address: server.sip.to_string(), pid: server.pid(), _process: Box::new(()) };
    hold_calls(&target, calls, Some(&server));
    println!();
}

/// The calls/s at which the concurrency part places its calls, and how long each stays up.
const CONCURRENCY_RATE: u32 = 500;
const CONCURRENCY_HOLD: Duration = Duration::from_secs(30);

/// Places `calls` calls on `target` that stay up [`CONCURRENCY_HOLD`]; prints one row. With `server`, the
/// live guests are counted at the peak and must all be gone once the callers hung up.
fn hold_calls(target: &Target, calls: u32, server: Option<&Server>) {
    let dir = std::env::temp_dir().join(format!("callwright-bench-hold-{}-{}", std::process::id(), target.pid));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create SIPp directory");
    let idle = rss_kib(target.pid);
    let mut sipp = Command::new(sipp_program())
        .arg(&target.address)
        .args(["-sn", "uac", "-i", "127.0.0.1", "-t", "u1", "-nostdin"])
        .args(["-p", &free_port().to_string(), "-r", &CONCURRENCY_RATE.to_string(), "-m", &calls.to_string()])
        .args(["-d", &CONCURRENCY_HOLD.as_millis().to_string(), "-timeout", "180s", "-trace_stat", "-stf", "stats.csv"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run sipp -sn uac");
    // Every call is placed by now and none has reached its BYE yet.
    std::thread::sleep(Duration::from_secs_f64(f64::from(calls) / f64::from(CONCURRENCY_RATE) + 3.0));
    let peak = rss_kib(target.pid);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", target.pid)).map_or(0, |m| m.lines().count());
    let live = server.map(|s| live_calls(s).to_string()).unwrap_or_else(|| "-".into());
    let _ = sipp.wait();
    let stats = read_stats(&dir.join("stats.csv")).expect("SIPp statistics");
    let ended = server.map_or("-".to_string(), |server| {
        let started = std::time::Instant::now();
        while live_calls(server) > 0 && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(200));
        }
        match live_calls(server) {
            0 => format!("yes, {:.1} s after SIPp ended", started.elapsed().as_secs_f64()),
            left => format!("no: {left} left"),
        }
    });
    let per_call = (peak.saturating_sub(idle)) as f64 / f64::from(calls.max(1));
    println!(
        "| {} | {} | {} | {live} | {:.0} | {:.0} | {per_call:.0} | {maps} | {ended} |",
        target.name,
        stats.successful,
        stats.failed,
        idle as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The number of live calls the server lists.
fn live_calls(server: &Server) -> usize {
    serde_json::from_str::<Vec<serde_json::Value>>(&server.api("GET", "/v1/calls", b"").body).map_or(0, |c| c.len())
}

/// Resident memory of a process in KiB; 0 once it is gone.
fn rss_kib(pid: u32) -> u64 {
    support::rss_kib(pid).unwrap_or(0)
}

/// answer-hangup against SIPp's UAS; returns both sustained rates (SIPp UAS, callwright).
fn calls(seconds: u32) -> (f64, f64) {
    let rates = env_list("CALLWRIGHT_BENCH_RATES").unwrap_or_else(|| DEFAULT_RATES.to_vec());
    let ticks = clock_ticks_per_second();

    let reference = Target::sipp_uas();
    let data = TempDir::new("bench");
    let callwright = Target::callwright(&data.0);

    println!("Offered rates {rates:?} calls/s, {seconds} s per step, SIPp UAC over UDP on 127.0.0.1.\n");
    let mut summary = Vec::new();
    for target in [&reference, &callwright] {
        let mut steps = Vec::new();
        for &rate in &rates {
            let step = run_step(target, &Scenario::BuiltinUac, rate, seconds, ticks);
            let clean = step.is_clean();
            steps.push(step);
            if !clean {
                break;
            }
        }
        print_steps(target.name, &steps);
        let sustained = steps.iter().filter(|s| s.is_clean()).map(|s| s.completed_per_s).fold(0.0, f64::max);
        summary.push((target.name, sustained, steps));
    }

    // The ramps end by overloading each target; let what that left behind (calls lingering for late
    // NOTIFYs, transactions in their wait states: 32 s at most) drain before measuring a steady rate.
    std::thread::sleep(COOL_DOWN);
    let half = (summary[1].1 / 2.0).round().max(1.0) as u32;
    let half_steps: Vec<Step> =
        [&reference, &callwright].iter().map(|t| run_step(t, &Scenario::BuiltinUac, half, seconds, ticks)).collect();
    println!("### At half of callwright's sustained rate ({half} calls/s offered)\n");
    print_header();
    for (target, step) in [&reference, &callwright].iter().zip(&half_steps) {
        print_row(target.name, step);
    }
    println!();

    let (reference_rate, callwright_rate) = (summary[0].1, summary[1].1);
    println!("### Summary\n");
    println!("| | SIPp UAS (reference) | callwright answer-hangup | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| sustained calls/s (clean steps) | {reference_rate:.0} | {callwright_rate:.0} | {:.2} |",
        ratio(callwright_rate, reference_rate)
    );
    let (ref_cpu, cw_cpu) = (half_steps[0].cpu_us_per_call, half_steps[1].cpu_us_per_call);
    println!("| CPU per call at {half}/s [µs] | {ref_cpu:.0} | {cw_cpu:.0} | {:.2} |", ratio(cw_cpu, ref_cpu));
    println!(
        "| p99 INVITE→200 at {half}/s [ms] | {} | {} | |",
        half_steps[0].p99_ms.map_or("-".into(), |v| v.to_string()),
        half_steps[1].p99_ms.map_or("-".into(), |v| v.to_string())
    );
    println!();
    (reference_rate, callwright_rate)
}

/// Blind transfers with hooks; compared with the call rates of the same run when given.
fn transfers(seconds: u32, call_rates: Option<(f64, f64)>) {
    let rates = env_list("CALLWRIGHT_BENCH_TRANSFER_RATES").unwrap_or_else(|| DEFAULT_TRANSFER_RATES.to_vec());
    let ticks = clock_ticks_per_second();
    let hooks = HookServer::start();
    let data = TempDir::new("bench-transfer");
    let server = Server::start_with(&data.0, &["--max-calls", "20000"], "warn");
    server.deploy("blind-transfer", support::BLIND_TRANSFER).assert_status(201);
    let app = format!(
        r#"{{"route": {{"to_user": "transfer"}},
            "flow": {{"module": "blind-transfer", "config": {{"target": "sip:target@127.0.0.1:9",
                      "action_hook": "{}", "event_hook": "{}"}}}},
            "hooks": {{"allow": ["{}"]}}}}"#,
        hooks.url("/action"),
        hooks.url("/event"),
        hooks.addr()
    );
    server.put_app("transfer", &app).assert_status(201);
    let target = Target {
        name: "callwright blind-transfer",
        address: server.sip.to_string(),
        pid: server.pid(),
        _process: Box::new(server),
    };
    let scenario = Scenario::File { name: "uac-refer-accept.xml", service: "transfer" };
    println!("### Blind transfers (REFER, 202, NOTIFY 100 and 200, hooks posted)\n");
    println!(
        "| offered transfers/s | completed transfers/s | failed | retrans. | hooks received / expected | CPU per transfer [µs] |"
    );
    println!("|---|---|---|---|---|---|");
    let mut expected = 0;
    let mut sustained: f64 = 0.0;
    for rate in rates {
        let step = run_step(&target, &scenario, rate, seconds, ticks);
        expected += step.successful as usize * HOOKS_PER_TRANSFER;
        let received = wait_for_hooks(&hooks, expected);
        let step_received = received - (expected - step.successful as usize * HOOKS_PER_TRANSFER);
        println!(
            "| {rate} | {:.0} | {} | {} | {step_received} / {} | {:.0} |",
            step.completed_per_s,
            step.failed,
            step.retransmissions,
            step.successful as usize * HOOKS_PER_TRANSFER,
            step.cpu_us_per_call
        );
        if !step.is_clean() || received < expected {
            break;
        }
        sustained = sustained.max(step.completed_per_s);
    }
    println!();
    println!("Sustained: {sustained:.0} transfers/s with every hook delivered.");
    if let Some((sipp_uas, answer_hangup)) = call_rates {
        println!(
            "Same run: {:.2} of callwright's answer-hangup rate ({answer_hangup:.0}/s), {:.2} of SIPp UAS's ({sipp_uas:.0}/s).",
            ratio(sustained, answer_hangup),
            ratio(sustained, sipp_uas)
        );
    }
    println!();
}

/// Waits (up to 10 s) until `expected` hooks arrived in all; returns how many did.
fn wait_for_hooks(hooks: &HookServer, expected: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let received = hooks.requests().len();
        if received >= expected || std::time::Instant::now() >= deadline {
            return received;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Something SIPp's UAC calls, with the process whose CPU time is charged to it.
struct Target {
    name: &'static str,
    address: String,
    pid: u32,
    /// Keeps the process alive; dropping it stops the process.
    _process: Box<dyn std::any::Any>,
}

impl Target {
    fn sipp_uas() -> Target {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("callwright-bench-uas-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create SIPp directory");
        let child = Command::new(sipp_program())
            .args(["-sn", "uas", "-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin", "-t", "u1"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sipp -sn uas (install Debian's sip-tester)");
        std::thread::sleep(Duration::from_millis(500));
        let pid = child.id();
        Target { name: "SIPp UAS", address: format!("127.0.0.1:{port}"), pid, _process: Box::new(KillOnDrop(child)) }
    }

    fn callwright(data: &Path) -> Target {
        let server = Server::start_with(data, &["--max-calls", "20000"], "warn");
        server.deploy("answer-hangup", support::ANSWER_HANGUP).assert_status(201);
        server.put_app("bench", &support::serde_like::app("answer-hangup", None, "null")).assert_status(201);
        Target { name: "callwright", address: server.sip.to_string(), pid: server.pid(), _process: Box::new(server) }
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What one step measured.
struct Step {
    offered: u32,
    attempted: u64,
    successful: u64,
    failed: u64,
    /// Failed calls that got a response the scenario did not expect (a 503 for SIPp's built-in UAC).
    refused: u64,
    /// Failed calls that got no answer in time.
    timed_out: u64,
    retransmissions: u64,
    completed_per_s: f64,
    cpu_us_per_call: f64,
    p50_ms: Option<u64>,
    p99_ms: Option<u64>,
    max_ms: Option<u64>,
}

impl Step {
    fn is_clean(&self) -> bool {
        self.failed == 0
            && self.retransmissions == 0
            && self.successful == self.attempted
            && self.completed_per_s >= f64::from(self.offered) * CLEAN_SHARE
    }
}

/// What SIPp's UAC runs.
enum Scenario {
    /// `-sn uac`.
    BuiltinUac,
    /// `-sn uac`, calling this user.
    BuiltinUacTo(&'static str),
    /// A file of `tests/sipp/`, calling `service`.
    File { name: &'static str, service: &'static str },
}

impl Scenario {
    fn args(&self) -> Vec<String> {
        match self {
            Scenario::BuiltinUac => vec!["-sn".into(), "uac".into()],
            Scenario::BuiltinUacTo(user) => vec!["-sn".into(), "uac".into(), "-s".into(), user.to_string()],
            Scenario::File { name, service } => {
                let path = support::sipp::scenarios_dir().join(name);
                vec!["-sf".into(), path.to_string_lossy().into_owned(), "-s".into(), service.to_string()]
            }
        }
    }
}

fn run_step(target: &Target, scenario: &Scenario, rate: u32, seconds: u32, ticks: u64) -> Step {
    let calls = u64::from(rate) * u64::from(seconds);
    let dir = std::env::temp_dir().join(format!("callwright-bench-{}-{}-{rate}", std::process::id(), target.pid));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create step directory");
    let cpu_before = cpu_ticks(target.pid);
    let status = Command::new(sipp_program())
        .arg(&target.address)
        .args(scenario.args())
        .args(["-i", "127.0.0.1", "-t", "u1", "-nostdin"])
        .args(["-p", &free_port().to_string(), "-r", &rate.to_string(), "-m", &calls.to_string()])
        .args(["-timeout", &format!("{}s", seconds * 3 + 20), "-trace_stat", "-stf", "stats.csv"])
        .args(["-trace_rtt", "-rtt_freq", "1"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run sipp -sn uac");
    // Let the target finish the last calls' transactions before its CPU is read.
    std::thread::sleep(Duration::from_millis(300));
    let cpu = cpu_ticks(target.pid).saturating_sub(cpu_before);
    let stats = read_stats(&dir.join("stats.csv"))
        .unwrap_or_else(|| panic!("SIPp wrote no statistics (exit {status}); see {}", dir.display()));
    let mut times = read_response_times(&dir);
    times.sort_unstable();
    let percentile = |p: f64| (!times.is_empty()).then(|| times[((times.len() - 1) as f64 * p).round() as usize]);
    let step = Step {
        offered: rate,
        attempted: calls,
        successful: stats.successful,
        failed: stats.failed,
        refused: stats.unexpected,
        timed_out: stats.timed_out,
        retransmissions: stats.retransmissions,
        completed_per_s: stats.successful as f64 / stats.elapsed_s.max(0.001),
        cpu_us_per_call: cpu as f64 * 1e6 / ticks as f64 / (stats.successful.max(1) as f64),
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        max_ms: times.last().copied(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "{}: offered {rate}/s -> {:.0}/s, {} failed, {} retransmissions",
        target.name, step.completed_per_s, step.failed, step.retransmissions
    );
    step
}

fn print_header() {
    println!(
        "| target | offered calls/s | completed calls/s | failed | retrans. | INVITE→200 p50 / p99 / max [ms] | CPU per call [µs] |"
    );
    println!("|---|---|---|---|---|---|---|");
}

fn print_row(name: &str, s: &Step) {
    let ms = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    println!(
        "| {name} | {} | {:.0} | {} | {} | {} / {} / {} | {:.0} |",
        s.offered,
        s.completed_per_s,
        s.failed,
        s.retransmissions,
        ms(s.p50_ms),
        ms(s.p99_ms),
        ms(s.max_ms),
        s.cpu_us_per_call
    );
}

fn print_steps(name: &str, steps: &[Step]) {
    println!("### {name}\n");
    print_header();
    for step in steps {
        print_row(name, step);
    }
    println!();
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// Every INVITE→200 time SIPp logged (`<scenario>_<pid>_rtt.csv`: "date_ms;response_time_ms;rtd_no").
fn read_response_times(dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let files: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with("_rtt.csv")).collect();
    let mut times = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        times.extend(
            text.lines().skip(1).filter_map(|l| l.split(';').nth(1)?.trim().parse::<f64>().ok()).map(|v| v as u64),
        );
    }
    times
}
