//! Builds the wasm guests the binary embeds (the examples `callwright serve` deploys on first start), the
//! built-in verb modules (`runtime/verbs`) and the test guests of the end-to-end tests, and tells the code where they are:
//! `GUEST_<CRATE>` environment constants with each component's path.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Guest workspaces, relative to the repository root, and the crates in each.
const GUEST_WORKSPACES: &[(&str, &[&str])] = &[
    (
        "guest-examples/rust",
        &["answer-hangup", "ivr", "blind-transfer", "attended-transfer", "custom-verb", "lookup-flow"],
    ),
    ("tests/guests", &["sip-behaviours", "hostile", "verb-sample", "verb-sample-v2", "stubbed-import", "media-player"]),
    (
        "runtime/verbs",
        &[
            "callwright-verbs-core",
            "callwright-verbs-transfer",
            "callwright-jambonz",
            "callwright-swml",
            "callwright-twiml",
        ],
    ),
];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join("../..");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    // Our own target dir: the outer cargo holds the lock on the main one.
    let target_dir = out.join("guests");
    for dir in ["wit", "sdk/rust/src", "sdk/rust/Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    for (workspace, crates) in GUEST_WORKSPACES {
        let manifest = root.join(workspace).join("Cargo.toml");
        println!("cargo:rerun-if-changed={}", root.join(workspace).display());
        build_workspace(&manifest, &target_dir);
        for name in *crates {
            let file = target_dir.join("wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")));
            assert!(file.exists(), "guest {name} was not built at {}", file.display());
            println!("cargo:rustc-env=GUEST_{}={}", name.replace('-', "_").to_uppercase(), file.display());
        }
    }
}

fn build_workspace(manifest: &Path, target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--locked", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir);
    // Flags meant for the host build must not leak into the guest build.
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "CARGO_TARGET_DIR", "RUSTC_WRAPPER"] {
        command.env_remove(var);
    }
    let status = command.status().expect("run cargo for the wasm guests");
    assert!(status.success(), "building the wasm guests in {} failed", manifest.display());
}
