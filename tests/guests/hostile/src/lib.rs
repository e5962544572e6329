//! Test guest that misbehaves, to prove the sandbox stops it without touching other calls. Config:
//! `{"mode": "spin" | "grow" | "trap" | "sleep" | "nap" | "hoard-variables" | "big-hooks", "answer_first": bool,
//! "hook": url, "payload_bytes": n, "nap_ms": n}`.

use callwright_sdk::hooks::{self, Hook};
use callwright_sdk::{Call, Config, Flow, clock, flow, variables};

struct Hostile;

impl Flow for Hostile {
    fn handle(call: Call, config: Config) -> Result<(), String> {
        if config.get("answer_first").and_then(|v| v.as_bool()).unwrap_or(false) {
            call.answer(&[], None).map_err(|e| e.to_string())?;
        }
        match config.get_str("mode").unwrap_or("spin") {
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut block = vec![0u8; 1 << 20];
                    block[hoard.len() % (1 << 20)] = 1;
                    hoard.push(std::hint::black_box(block));
                }
            }
            "trap" => panic!("this guest traps on purpose"),
            // Keeps 64 KiB variables in the host until it is stopped.
            "hoard-variables" => {
                let value = "v".repeat(64 * 1024);
                for n in 0.. {
                    variables::set(&format!("hoard-{n}"), &value);
                }
                Ok(())
            }
            // Sends a payload of `payload_bytes` to `hook`, then asks `hook` for a response (the test's server
            // answers with a large body), and reports each outcome to `hook` in a small payload.
            "big-hooks" => {
                let hook = Hook::post(config.get_str("hook").ok_or("no hook")?);
                let size = config.get("payload_bytes").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
                let big = format!("{{\"filler\": \"{}\"}}", "x".repeat(size));
                let sent = hooks::send(&hook, &big).map(|r| r.status);
                let asked = hooks::send(&hook, "{\"ask\": true}").map(|r| r.body.len());
                let report =
                    callwright_sdk::serde_json::json!({"sent": format!("{sent:?}"), "asked": format!("{asked:?}")});
                hooks::send(&hook, &report.to_string()).map_err(|e| e.to_string())?;
                call.hangup().map_err(|e| e.to_string())
            }
            // Waits `nap_ms` in 20 ms slices, as a guest polling its call does (half of them on the call's
            // events, half in the clock), then hangs up: waiting is not CPU, so a small budget holds.
            "nap" => {
                let until = clock::now_ms() + config.get_u64("nap_ms").unwrap_or(10_000);
                while clock::now_ms() < until {
                    if let Some(callwright_sdk::CallEvent::Ended(_)) = call.next_event(Some(20)) {
                        return Err("the caller hung up during the nap".into());
                    }
                    clock::sleep(20);
                }
                call.hangup().map_err(|e| e.to_string())
            }
            // Outlives its call: sleeps ten minutes whatever happens to the call.
            "sleep" => {
                clock::sleep(600_000);
                Ok(())
            }
            _ => {
                let mut counter: u64 = 0;
                loop {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
            }
        }
    }
}

flow!(Hostile);
