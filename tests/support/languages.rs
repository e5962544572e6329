//! The examples of every guest language. Rust's are built by `runtime/cli/build.rs`; each other
//! language's by its `guest-examples/<lang>/build.sh`, which installs its toolchain on first use (from
//! the package registries) and builds the examples from source into `target/guest-examples/<lang>`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// A guest language with examples in `guest-examples/<dir>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Rust,
    JavaScript,
    Python,
    C,
}

impl Language {
    /// Every language with examples.
    pub const ALL: [Language; 4] = [Language::Rust, Language::JavaScript, Language::Python, Language::C];

    /// Its folder under `guest-examples/`.
    pub fn dir(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::JavaScript => "js",
            Language::Python => "python",
            Language::C => "c",
        }
    }

    /// The component of example `name` (`answer-hangup`, `blind-transfer` or `ivr`), built from source.
    pub fn example(self, name: &str) -> String {
        if self == Language::Rust {
            return match name {
                "answer-hangup" => super::ANSWER_HANGUP.to_string(),
                "blind-transfer" => super::BLIND_TRANSFER.to_string(),
                "ivr" => super::IVR.to_string(),
                other => panic!("no Rust example {other}"),
            };
        }
        built_file(self.dir(), self.dir(), &[], name)
    }
}

/// JavaScript's `answer-hangup` on the StarlingMonkey engine (`build.sh --starlingmonkey`), which imports
/// `wasi:http` for `fetch()`.
pub fn starlingmonkey_answer_hangup() -> String {
    built_file("js", "js-starlingmonkey", &["--starlingmonkey"], "answer-hangup-starlingmonkey")
}

/// Component `name` built by `guest-examples/<lang>/build.sh` with `args` into `target/guest-examples/<out>`.
fn built_file(lang: &str, out: &str, args: &[&str], name: &str) -> String {
    let file = build_examples(lang, out, args).join(format!("{name}.wasm"));
    assert!(file.exists(), "{} was not built", file.display());
    file.to_string_lossy().into_owned()
}

/// Runs `guest-examples/<lang>/build.sh` once per process and output folder; returns that folder. Builds
/// run one at a time (they use every core; the calls of other tests keep running meanwhile).
fn build_examples(lang: &str, out: &str, args: &[&str]) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out_dir = root.join("target/guest-examples").join(out);
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !built.iter().any(|done| done == out) {
        let script = root.join("guest-examples").join(lang).join("build.sh");
        let output = Command::new("bash")
            .arg(&script)
            .arg(&out_dir)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} failed ({}):\n{}\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        built.push(out.to_string());
    }
    out_dir
}
