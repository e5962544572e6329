//! What every call pays before its guest runs: a fresh sandbox (store, WASI context that grants nothing,
//! limits) and an instance of the `answer-hangup` example from its precompiled `InstancePre`, through the
//! pooling allocator, exactly as `serve` does per call (`Runtime::instantiate_only`). Single-threaded, in
//! process; prints the mean and percentiles over `CALLWRIGHT_BENCH_ITERATIONS` (default 20,000) after a
//! warm-up that touches every pool slot once.
//!
//! Run: `cargo bench -p callwright --bench instantiate`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use callwright_driver::{DriverConfig, SipDriver};
use callwright_host::apps::AppStore;
use callwright_host::engine::HostEngine;
use callwright_host::limits::SandboxLimits;
use callwright_host::modules::ModuleStore;
use callwright_host::runtime::Runtime;

const DEFAULT_ITERATIONS: usize = 20_000;
/// Instances created before measuring: more than the pool's slots, so every slot has been used once.
const WARM_UP: usize = 2_000;

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("instantiate: run with `cargo bench -p callwright --bench instantiate`");
        return Ok(());
    }
    let iterations = std::env::var("CALLWRIGHT_BENCH_ITERATIONS").ok().and_then(|v| v.parse().ok());
    let iterations: usize = iterations.unwrap_or(DEFAULT_ITERATIONS);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let data = std::env::temp_dir().join(format!("callwright-bench-instantiate-{}", std::process::id()));
        std::fs::create_dir_all(&data)?;
        let engine = Arc::new(HostEngine::new(SandboxLimits::default())?);
        let modules = Arc::new(ModuleStore::open(engine.clone(), &data)?);
        let apps = Arc::new(AppStore::open(&data)?);
        let (sip, _events) = SipDriver::start(DriverConfig::new(vec!["127.0.0.1:0".parse()?])).await?;
        let bytes = std::fs::read(env!("GUEST_ANSWER_HANGUP"))?;
        modules.put("answer-hangup", &bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
        let module = modules.get("answer-hangup").expect("just stored");
        let runtime = Runtime::new(engine.clone(), modules, apps, sip)?;

        for _ in 0..WARM_UP {
            runtime.instantiate_only(&module).await?;
        }
        let mut times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let started = Instant::now();
            runtime.instantiate_only(&module).await?;
            times.push(started.elapsed());
        }
        times.sort_unstable();
        let mean = times.iter().sum::<Duration>() / iterations as u32;
        let at = |p: f64| times[((iterations - 1) as f64 * p).round() as usize];
        println!("| component | size | pooling | instances | mean | p50 | p99 | max |");
        println!("|---|---|---|---|---|---|---|---|");
        println!(
            "| answer-hangup (Rust) | {} KiB | {} | {iterations} | {mean:.1?} | {:.1?} | {:.1?} | {:.1?} |",
            bytes.len() / 1024,
            engine.uses_pooling(),
            at(0.5),
            at(0.99),
            times[iterations - 1]
        );
        let _ = std::fs::remove_dir_all(&data);
        Ok(())
    })
}
