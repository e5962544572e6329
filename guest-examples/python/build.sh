#!/usr/bin/env bash
# Builds the Python guest examples into OUT_DIR/answer-hangup.wasm, OUT_DIR/blind-transfer.wasm and
# OUT_DIR/ivr.wasm.
#   guest-examples/python/build.sh OUT_DIR
# Installs what it needs when missing: python3 with venv (Debian apt), then PyPI componentize-py (pinned) into a
# venv under target/toolchains/python/ of this repository. A second run reuses it.
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1

if [ $# -ne 1 ]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
tools="$repo/target/toolchains/python"
venv="$tools/venv"

apt_install() {
    echo "installing (apt): $*"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# componentize-py needs Python >= 3.10 with venv (Debian splits venv/ensurepip into python3-venv).
if ! command -v python3 >/dev/null 2>&1; then
    apt_install python3 python3-venv
fi
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "python3 is $(python3 --version 2>&1); componentize-py needs 3.10 or later" >&2
    exit 1
fi

if [ "$("$venv/bin/componentize-py" --version 2>/dev/null || true)" != "componentize-py $COMPONENTIZE_PY_VERSION" ]; then
    echo "installing (PyPI): componentize-py==$COMPONENTIZE_PY_VERSION into $venv"
    rm -rf "$venv"
    mkdir -p "$tools"
    if ! python3 -m venv "$venv" 2>/dev/null; then
        rm -rf "$venv"
        apt_install python3-venv
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
fi
echo "using $("$venv/bin/componentize-py" --version)"

# componentize-py makes the -p directories importable, plus "." and the site-packages of $VIRTUAL_ENV (else of
# the machine's python3). Keep the build hermetic: run it from an empty directory with an empty site-packages,
# on copies of the sources (its Python writes __pycache__ beside what it imports).
work="$tools/work"
rm -rf "$work"
mkdir -p "$work/venv/lib/python3/site-packages"
export VIRTUAL_ENV="$work/venv"

build() { # example directory, app module
    local name=$1 module=$2
    local start=$SECONDS dir="$work/$name"
    mkdir -p "$dir/src"
    cp -r "$repo/sdk/python/callwright" "$here/$name/$module.py" "$dir/src/"
    (cd "$dir" && "$venv/bin/componentize-py" --quiet -d "$repo/wit" -w call-flow componentize \
        -p "$dir/src" "$module" -o "$out/$name.wasm")
    echo "built $out/$name.wasm ($(stat -c %s "$out/$name.wasm") bytes, $((SECONDS - start)) s)"
}

# Two at a time: each build takes about 20 s of CPU, most of it on one core.
build answer-hangup answer_hangup &
first=$!
build blind-transfer blind_transfer &
second=$!
status=0
wait "$first" || status=1
build ivr ivr || status=1
wait "$second" || status=1
exit "$status"
