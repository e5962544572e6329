#!/usr/bin/env bash
# Fuzzes every target of this project for a bounded time: run.sh [SECONDS_PER_TARGET] (default 40).
# CI runs the default (2 minutes of fuzzing in all); run it by hand with e.g. 600 to look harder.
#
# Installs what it needs on first use: the pinned nightly below (libFuzzer needs -Zsanitizer) through
# rustup, and cargo-fuzz into <repo>/target/toolchains/fuzz. Builds all targets once, then runs each from a
# fresh corpus seeded with the RFC 4475 torture messages and regressions/. Everything it writes goes under
# fuzz/target/. A crash, timeout or out-of-memory fails the script and prints the input (hex and base64),
# so the CI log alone is enough to reproduce it.
set -euo pipefail

seconds=${1:-40}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2; }

# A dated nightly, so CI does not break when nightly does; bump it by hand (FUZZ_TOOLCHAIN overrides it).
nightly=${FUZZ_TOOLCHAIN:-nightly-2026-10-30}
cargo_fuzz_version=0.13.2
targets=(parse_message stream_framer endpoint_input)

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$fuzz_dir/../../.." && pwd)
tools=$repo/target/toolchains/fuzz
cargo_fuzz=$tools/bin/cargo-fuzz
target_dir=$fuzz_dir/target
run_dir=$target_dir/run

if ! rustup which --toolchain "$nightly" rustc >/dev/null 2>&1; then
    echo "installing $nightly"
    rustup toolchain install "$nightly" --profile minimal
fi
if [[ "$("$cargo_fuzz" --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]]; then
    echo "installing cargo-fuzz $cargo_fuzz_version into $tools"
    # From the repo root, so the stable toolchain pinned in rust-toolchain.toml builds it.
    (cd "$repo" && nice -n 10 cargo install --root "$tools" cargo-fuzz --version "$cargo_fuzz_version" --locked --force)
fi

# cargo-fuzz calls `cargo`, which the rustup proxy resolves to this toolchain.
export RUSTUP_TOOLCHAIN=$nightly
cd "$fuzz_dir"
# cargo-fuzz has no --locked: fetching with it first fails if Cargo.lock is stale, and the build then
# resolves from the same lock file.
cargo fetch --locked --quiet
build_start=$SECONDS
nice -n 10 "$cargo_fuzz" fuzz build --target-dir "$target_dir"
echo "built ${targets[*]} in $((SECONDS - build_start)) s"
host=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=$target_dir/$host/release

# A panic's backtrace in the CI log shows where it happened without reproducing it.
export RUST_BACKTRACE=1

# The value of one `stat::<name>: <value>` line that -print_final_stats=1 prints at the end.
final_stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -n 1; }

summary=()
failed=""
for target in "${targets[@]}"; do
    corpus=$run_dir/corpus/$target
    artifacts=$run_dir/artifacts/$target
    log=$run_dir/$target.log
    rm -rf "$corpus" "$artifacts"
    mkdir -p "$corpus" "$artifacts"
    echo "fuzzing $target for $seconds s"
    # The first corpus directory takes the new inputs; the seeds after it are only read.
    status=0
    nice -n 10 "$bin_dir/$target" "$corpus" "$repo/runtime/sip/tests/rfc4475" "$fuzz_dir/regressions" \
        -dict="$fuzz_dir/sip.dict" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 || status=$?
    execs=$(final_stat number_of_executed_units "$log")
    speed=$(final_stat average_exec_per_sec "$log")
    # The last status line, e.g. `#123 DONE cov: 812 ft: 3391 corp: 640/61Kb ...`.
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    corp=$(sed -n 's/.* corp: \([^ ]*\).*/\1/p' <<<"$last")
    cov=$(sed -n 's/.* cov: \([^ ]*\).*/\1/p' <<<"$last")
    if ((status == 0)); then
        result=ok
    else
        result="FAILED (exit $status)"
        failed+=" $target"
    fi
    line=$(printf '%-15s %5s s  %11s execs  %7s exec/s  corpus %-11s cov %-6s %s' \
        "$target" "$seconds" "${execs:-?}" "${speed:-?}" "${corp:-?}" "${cov:-?}" "$result")
    summary+=("$line")
    echo "$line"
    ((status == 0)) && continue

    # The panic message or sanitizer report and the stack under it; the whole log stays in $log.
    first=$(grep -n -m 1 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)' "$log" | cut -d: -f1 || true)
    echo "---- $log from line ${first:=1}"
    tail -n "+$first" "$log" | head -n 80
    input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    [[ -n $input && -f $input ]] || input=$(ls -t "$artifacts"/* 2>/dev/null | head -n 1 || true)
    if [[ -z $input ]]; then
        echo "---- $target failed without writing an input"
        continue
    fi
    echo "---- the input: $input ($(wc -c <"$input") bytes)"
    od -A x -t x1z -v "$input" | head -n 256
    cat <<EOF
---- the same input in base64; recreate it with: echo '<base64>' | base64 -d > $target-crash
$(base64 -w 0 "$input")
---- to replay, shrink and keep it (from runtime/sip, with PATH="$tools/bin:\$PATH"):
  cargo +$nightly fuzz run $target $target-crash     # replays it once
  cargo +$nightly fuzz tmin $target $target-crash    # minimises it into fuzz/artifacts/$target/
  cp fuzz/artifacts/$target/minimized-from-* fuzz/regressions/$target-<what-breaks>
then fix the cause; tests/fuzz_regressions.rs replays every file in fuzz/regressions/.
EOF
done

echo "---- fuzzed $seconds s per target, $SECONDS s in all with the build"
printf '%s\n' "${summary[@]}"
if [[ -n $failed ]]; then
    echo "fuzzing found a problem in:$failed" >&2
    exit 1
fi
