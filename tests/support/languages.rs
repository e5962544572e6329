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

    /// The component of example `name` (`answer-hangup` or `blind-transfer`), built from source.
    pub fn example(self, name: &str) -> String {
        if self == Language::Rust {
            return match name {
                "answer-hangup" => super::ANSWER_HANGUP.to_string(),
                "blind-transfer" => super::BLIND_TRANSFER.to_string(),
                other => panic!("no Rust example {other}"),
            };
        }
        let file = build_examples(self).join(format!("{name}.wasm"));
        assert!(file.exists(), "{} was not built", file.display());
        file.to_string_lossy().into_owned()
    }
}

/// Runs `guest-examples/<lang>/build.sh` once per process and language; returns its output folder. Builds
/// run one at a time (they use every core; the calls of other tests keep running meanwhile).
fn build_examples(language: Language) -> PathBuf {
    static BUILT: Mutex<Vec<Language>> = Mutex::new(Vec::new());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = root.join("target/guest-examples").join(language.dir());
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !built.contains(&language) {
        let script = root.join("guest-examples").join(language.dir()).join("build.sh");
        let output = Command::new("bash")
            .arg(&script)
            .arg(&out)
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
        built.push(language);
    }
    out
}
