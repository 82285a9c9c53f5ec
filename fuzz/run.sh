#!/usr/bin/env bash
# Builds the libFuzzer targets on stable Rust and runs them for a bounded time.
#
#   fuzz/run.sh                      every target, 30 s each
#   fuzz/run.sh reassembly 120       one target (ipv4_parse | fragment | reassembly | tcp |
#                                    ipv6_reassembly | gso | all), 120 s
#   fuzz/run.sh all 30 -jobs=2       extra arguments go to libFuzzer
#
# Stable rustc has no `-Zsanitizer`, but LLVM's SanitizerCoverage pass can be switched on with
# `-Cpasses=sancov-module` and LLVM options, which is what libFuzzer needs for coverage-guided
# mutation (8-bit edge counters, the PC table and comparison tracing). `--target` is passed so
# RUSTFLAGS reach only the fuzzed crates, not build scripts. The libFuzzer runtime itself is C++
# compiled by the `libfuzzer-sys` crate (needs a C++ compiler: g++ or clang++).
#
# Seeds are written fresh by `src/bin/seeds.rs` into corpus/<target>/ (git-ignored), which also
# keeps what libFuzzer adds, so later local runs start from a richer corpus. A crash leaves its
# input in artifacts/<target>/ and fails the script; replay one with
#   fuzz/target/x86_64-unknown-linux-gnu/release/<target> artifacts/<target>/crash-…
set -euo pipefail
cd "$(dirname "$0")"

targets=(ipv4_parse fragment reassembly ipv6_reassembly tcp gso)
which=${1:-all}
seconds=${2:-30}
shift $(($# < 2 ? $# : 2))
if [ "$which" != all ]; then
  [[ " ${targets[*]} " == *" $which "* ]] || { echo "unknown target '$which' (${targets[*]} or all)" >&2; exit 2; }
  targets=("$which")
fi

host=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR="$PWD/target"

# The harness's own tests (the checks hold on the seeds and on pseudo-random inputs) and the seed
# generator are ordinary builds (no instrumentation) in their own target subfolder.
CARGO_TARGET_DIR="$PWD/target/plain" RUSTFLAGS= cargo test --quiet --release --lib
CARGO_TARGET_DIR="$PWD/target/plain" RUSTFLAGS= cargo run --quiet --release --bin seeds -- corpus

export RUSTFLAGS="-Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --quiet --release --features libfuzzer --target "$host" $(printf -- '--bin %s ' "${targets[@]}")

status=0
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  echo "--- fuzzing $target for ${seconds}s"
  # -rss_limit_mb bounds memory; -max_len covers a 64 KiB datagram plus the input's own header.
  if ! "target/$host/release/$target" "corpus/$target" \
      -max_total_time="$seconds" -max_len=70000 -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 -artifact_prefix="artifacts/$target/" "$@" 2>"artifacts/$target.log"; then
    status=1
    echo "!!! $target failed; the input is in fuzz/artifacts/$target/, the log in fuzz/artifacts/$target.log" >&2
    grep -E -A30 'panicked|ERROR|SUMMARY' "artifacts/$target.log" | head -60 >&2 || true
  fi
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "artifacts/$target.log" || true
  grep -E '^#[0-9]+' "artifacts/$target.log" | tail -1 || true
done
echo "fuzz: ${targets[*]} for ${seconds}s each: $([ $status = 0 ] && echo 'no crash' || echo 'CRASH, see above')"
exit $status
