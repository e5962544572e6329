#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test in the workspace.
#   - the Rust toolchain and the wasm32-wasip2 target named in rust-toolchain.toml (through rustup);
#   - SIPp (Debian sip-tester) and baresip, the real SIP peers of the interop tests, and SIPVicious
#     (Debian sipvicious), the scanner of the hostile-input tests; flite, the built-in voice (and the tests'
#     reference rendering of what it says); libopus-dev, the Opus codec the build links;
#   - the guest toolchains of JavaScript, Python and C: tests/languages.rs runs guest-examples/<lang>/build.sh,
#     which installs its own on first use (npm, PyPI, Debian, crates.io) into target/toolchains/<lang>;
#   - for the fuzzing at the end, a pinned nightly toolchain and cargo-fuzz (runtime/sip/fuzz/run.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
command -v baresip >/dev/null 2>&1 || missing+=(baresip)
command -v svmap >/dev/null 2>&1 || missing+=(sipvicious)
command -v flite >/dev/null 2>&1 || missing+=(flite)
# libopus (the Opus codec) is linked by the build: its development package has the library to link against.
[ -e /usr/include/opus/opus.h ] || missing+=(libopus-dev)
if ((${#missing[@]})); then
    echo "installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The toolchain and target pinned in rust-toolchain.toml (explicitly: rustup's auto-install may be off).
toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
rustup toolchain list | grep -q "^$toolchain" || rustup toolchain install "$toolchain" --profile minimal -c rustfmt,clippy
rustup target list --installed --toolchain "$toolchain" | grep -q wasm32-wasip2 || rustup target add --toolchain "$toolchain" wasm32-wasip2

cargo test --workspace --locked "$@"
# The built-in verb modules are their own workspace (a wasm guest); their argument parsing is tested natively.
cargo test --locked --manifest-path runtime/verbs/Cargo.toml
# Fuzz the SIP parser, stream framer and endpoint for a bounded time (CALLWRIGHT_FUZZ_SECONDS per target,
# default 40; 0 skips). A crash fails the run and prints the input.
fuzz_seconds=${CALLWRIGHT_FUZZ_SECONDS:-40}
if [ "$fuzz_seconds" != 0 ]; then
    runtime/sip/fuzz/run.sh "$fuzz_seconds"
fi
