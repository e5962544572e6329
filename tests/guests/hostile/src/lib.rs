//! Test guest that misbehaves, to prove the sandbox stops it without touching other calls. Config:
//! `{"mode": "spin" | "grow" | "trap" | "sleep", "answer_first": bool}`.

use callwright_sdk::{Call, Config, Flow, clock, flow};

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
