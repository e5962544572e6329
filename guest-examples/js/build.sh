#!/usr/bin/env bash
# Builds the JavaScript guest examples into components:
#   guest-examples/js/build.sh OUT_DIR [--starlingmonkey]
# gives OUT_DIR/answer-hangup.wasm, OUT_DIR/blind-transfer.wasm and OUT_DIR/ivr.wasm (jco's QuickJS backend,
# no component-model async ABI needed), and with --starlingmonkey also OUT_DIR/answer-hangup-starlingmonkey.wasm (the
# StarlingMonkey backend; it imports wasi:http, which the host stubs).
#
# Toolchain: Node.js >= 20.19 with npm (Debian's nodejs and npm packages when missing), and the npm packages
# pinned in sdk/js/package.json + package-lock.json (jco, componentize-qjs, esbuild, ...), installed with
# `npm ci` into target/toolchains/js; reinstalled only when the lock file changes.
set -euo pipefail

usage() { echo "usage: $0 OUT_DIR [--starlingmonkey]" >&2; exit 2; }
out="" starlingmonkey=0
for arg in "$@"; do
    case "$arg" in
        --starlingmonkey) starlingmonkey=1 ;;
        -*) usage ;;
        *) [ -z "$out" ] || usage; out="$arg" ;;
    esac
done
[ -n "$out" ] || usage

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
sdk="$repo/sdk/js"
tools="$repo/target/toolchains/js"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# --- Node.js and npm (Debian packages) ---------------------------------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "installing Debian packages nodejs npm"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
fi
node -e '
    const [major, minor] = process.versions.node.split(".").map(Number);
    if (major < 20 || (major === 20 && minor < 19)) {
        console.error(`Node.js ${process.versions.node} is too old: jco needs >= 20.19`);
        process.exit(1);
    }'

# --- npm packages pinned by sdk/js/package-lock.json ----------------------------------------------------------
lock_hash="$(sha256sum "$sdk/package-lock.json" "$sdk/package.json" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$tools/.installed" 2>/dev/null || true)" != "$lock_hash" ]; then
    echo "installing npm packages of sdk/js/package-lock.json into $tools (node $(node --version), npm $(npm --version)):"
    mkdir -p "$tools"
    cp "$sdk/package.json" "$sdk/package-lock.json" "$tools/"
    # `npm install` with the lock file in place installs its versions (`npm ci` would refuse the lock file
    # when the registry lacks some other platform's optional native package). No package needs its install
    # script (esbuild's only checks its binary, which comes as an npm package).
    npm install --prefix "$tools" --ignore-scripts --no-audit --no-fund --loglevel=error
    (cd "$tools" && npm ls --depth=0 2>/dev/null | tail -n +2)
    echo "$lock_hash" >"$tools/.installed"
fi
bin="$tools/node_modules/.bin"

# --- The examples --------------------------------------------------------------------------------------------
build="$out/js-build"
mkdir -p "$build"

# One ES module per example: the example, the SDK (imported as "callwright-sdk"); the host's interfaces
# (callwright:voice/...) stay imports that the component links.
bundle() {
    "$bin/esbuild" "$here/$1/flow.js" --bundle --format=esm --platform=neutral --target=es2022 \
        --alias:callwright-sdk="$sdk/callwright.js" '--external:callwright:*' \
        --log-level=warning --outfile="$build/$1.js"
}

for example in answer-hangup blind-transfer ivr; do
    start=$(date +%s%N)
    bundle "$example"
    "$bin/jco" componentize "$build/$example.js" --wit "$repo/wit" --world-name call-flow \
        --backend quickjs --backend-qjs-disable-async -o "$out/$example.wasm" >/dev/null
    echo "built $out/$example.wasm ($(stat -c %s "$out/$example.wasm") bytes, $((($(date +%s%N) - start) / 1000000)) ms)"
done

if ((starlingmonkey)); then
    # StarlingMonkey (SpiderMonkey) through componentize-js, called directly: `jco componentize --backend
    # starlingmonkey` 1.35 fails ("failed to get path metadata"). Its default features are kept: its fetch()
    # support imports wasi:http, which callwright stubs (calling fetch() traps). componentize-js wants the
    # WIT folder under its working directory.
    start=$(date +%s%N)
    rm -rf "$build/wit" && cp -r "$repo/wit" "$build/wit"
    bundle answer-hangup
    (cd "$build" && node --input-type=module -e '
        const [module, out] = process.argv.slice(1);
        const { componentize } = await import(module);
        const { component } = await componentize({
            sourcePath: "answer-hangup.js", witPath: "wit", worldName: "call-flow",
        });
        (await import("node:fs")).writeFileSync(out, component);
    ' "file://$tools/node_modules/@bytecodealliance/componentize-js/src/componentize.js" \
        "$out/answer-hangup-starlingmonkey.wasm")
    echo "built $out/answer-hangup-starlingmonkey.wasm ($(stat -c %s "$out/answer-hangup-starlingmonkey.wasm") bytes, $((($(date +%s%N) - start) / 1000000)) ms)"
fi
