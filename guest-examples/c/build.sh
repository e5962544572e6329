#!/usr/bin/env bash
# Builds the C guest examples into OUT_DIR/answer-hangup.wasm, OUT_DIR/blind-transfer.wasm and OUT_DIR/ivr.wasm.
#
# Installs what it needs when missing (idempotent; a second run installs nothing):
#   - Debian: clang-14, lld-14, wasi-libc, libclang-rt-14-dev-wasm32 (apt-get);
#   - sdk/c/tool (callwright-c-build, from crates.io's wit-bindgen-c, wit-component and wasmtime 48's WASI
#     preview1 reactor adapter), built with cargo into target/toolchains/c.
# Pipeline: C bindings of world call-flow -> clang wasm32-wasi reactor module -> component with the adapter.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi

APT_PACKAGES=(clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32)

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TC="$REPO/target/toolchains/c"
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
mkdir -p "$TC"

# ---- Debian packages
missing=()
for package in "${APT_PACKAGES[@]}"; do
    dpkg -s "$package" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "installing (apt): ${missing[*]}"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
CLANG=/usr/bin/clang-14

# ---- crates.io tools (run cargo from inside the repo, so rust-toolchain.toml picks the compiler)
command -v cargo >/dev/null 2>&1 || { echo "cargo is needed (see rust-toolchain.toml)" >&2; exit 1; }
# callwright-c-build (sdk/c/tool): the C bindings (the library behind `wit-bindgen c`) and the component
# step with wasmtime 48's reactor adapter (the library behind `wasm-tools component new`). Cargo rebuilds it
# only when its sources change.
echo "building sdk/c/tool (callwright-c-build) into $TC"
cargo build --quiet --release --locked --manifest-path "$REPO/sdk/c/tool/Cargo.toml" --target-dir "$TC/tool-target"
TOOL="$TC/tool-target/release/callwright-c-build"

echo "toolchain: $("$CLANG" --version | head -n1); $("$TOOL" --version)"

WORK=$(mktemp -d "$TC/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
"$TOOL" bindings "$REPO/wit" call-flow "$WORK/bindings"

CFLAGS=(--target=wasm32-wasi --sysroot=/usr -O2 -Wall -Wextra -Werror)
"$CLANG" "${CFLAGS[@]}" -c "$WORK/bindings/call_flow.c" -o "$WORK/call_flow.o"
"$CLANG" "${CFLAGS[@]}" -I "$WORK/bindings" -c "$REPO/sdk/c/callwright.c" -o "$WORK/callwright.o"

build() { # example source
    local name=$1 source=$2
    "$CLANG" "${CFLAGS[@]}" -mexec-model=reactor -I "$WORK/bindings" -I "$REPO/sdk/c" \
        "$HERE/$name/$source" "$WORK/callwright.o" "$WORK/call_flow.o" "$WORK/bindings/call_flow_component_type.o" \
        -Wl,--strip-all -o "$WORK/$name.core.wasm"
    "$TOOL" component "$WORK/$name.core.wasm" "$OUT/$name.wasm"
    echo "built $OUT/$name.wasm ($(wc -c <"$OUT/$name.wasm") bytes)"
}
build answer-hangup answer_hangup.c
build blind-transfer blind_transfer.c
build ivr ivr.c
