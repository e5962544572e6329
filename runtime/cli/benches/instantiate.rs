//! What every call pays before its guest runs: a fresh sandbox (store, WASI context that grants nothing,
//! limits) and an instance of the `answer-hangup` example from its precompiled `InstancePre`, through the
//! pooling allocator, exactly as `serve` does per call (`Runtime::instantiate_only`). Single-threaded, in
//! process; prints the mean and percentiles over `CALLWRIGHT_BENCH_ITERATIONS` (default 20,000) after a
//! warm-up that touches every pool slot once. The same is measured, in the same run, with an engine that
//! allocates each instance on demand (no pooling), as the reference.
//!
//! The same, with pooling, for the `answer-hangup` example of every other guest language (built from source
//! by `guest-examples/<lang>/build.sh`); `CALLWRIGHT_BENCH_ONLY=rust` measures Rust's alone.
//!
//! Run: `cargo bench -p callwright --bench instantiate`.

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use callwright_driver::{DriverConfig, SipDriver};
use callwright_host::apps::AppStore;
use callwright_host::engine::HostEngine;
use callwright_host::limits::SandboxLimits;
use callwright_host::modules::ModuleStore;
use callwright_host::runtime::Runtime;
use support::languages::Language;

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
    println!("| component | size | allocator | instances | mean | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut runs: Vec<(Language, &str, HostEngine)> = vec![
        (Language::Rust, "pooling (as `serve`)", HostEngine::new(SandboxLimits::default())?),
        (Language::Rust, "on demand (reference)", HostEngine::on_demand(SandboxLimits::default())?),
    ];
    if std::env::var("CALLWRIGHT_BENCH_ONLY").as_deref() != Ok("rust") {
        for language in [Language::C, Language::JavaScript, Language::Python] {
            runs.push((language, "pooling (as `serve`)", HostEngine::new(SandboxLimits::default())?));
        }
    }
    let mut means = Vec::new();
    for (language, allocator, engine) in runs {
        let bytes = std::fs::read(language.example("answer-hangup"))?;
        let times = runtime.block_on(measure(Arc::new(engine), &bytes, iterations))?;
        let mean = times.iter().sum::<Duration>() / iterations as u32;
        let at = |p: f64| times[((iterations - 1) as f64 * p).round() as usize];
        println!(
            "| answer-hangup ({language:?}) | {} KiB | {allocator} | {iterations} | {mean:.1?} | {:.1?} | {:.1?} | {:.1?} |",
            bytes.len() / 1024,
            at(0.5),
            at(0.99),
            times[iterations - 1]
        );
        means.push(mean);
    }
    println!("\npooling / on demand (Rust), mean: {:.2}", means[0].as_secs_f64() / means[1].as_secs_f64());
    Ok(())
}

/// Instantiates the component `iterations` times (after the warm-up) and returns each time, sorted.
async fn measure(engine: Arc<HostEngine>, bytes: &[u8], iterations: usize) -> anyhow::Result<Vec<Duration>> {
    let data = std::env::temp_dir().join(format!("callwright-bench-instantiate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    let modules = Arc::new(ModuleStore::open(engine.clone(), &data)?);
    let apps = Arc::new(AppStore::open(&data)?);
    let (sip, _events) = SipDriver::start(DriverConfig::new(vec!["127.0.0.1:0".parse()?])).await?;
    modules.put("answer-hangup", bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    let module = modules.get("answer-hangup").expect("just stored");
    let media = Arc::new(callwright_host::media_store::MediaStore::open(&data)?);
    let runtime = Runtime::new(engine, modules, apps, media, sip)?;
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
    let _ = std::fs::remove_dir_all(&data);
    Ok(times)
}
