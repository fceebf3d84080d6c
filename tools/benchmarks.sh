#!/usr/bin/env bash
# Reproduces every section of docs/benchmarks.md from a fresh clone, in one command:
#
#   tools/benchmarks.sh            # as root on Debian 12; ~1 h on 2 cores, ~30 GB of disk
#
# 1. installs the build dependencies (apt) and builds Jindou in release mode;
# 2. builds llama.cpp's llama-bench with tools/llama_cpp.sh, from the sources vendored in PyPI's
#    llama-cpp-python source distribution (the only llama.cpp source reachable without other
#    internet; it goes to $JINDOU_LLAMA_DIR, default /tmp/jindou-llama, and is reused);
# 3. writes a synthetic Qwen3-30B-A3B-shape model (8 layers, bf16) and, from it, Q8_0 and
#    Q4_K GGUF files with `jindouctl quantize` (llama.cpp and Jindou read the same files);
# 4. runs `jindouctl bench kernels`, `bench decode` (Jindou vs llama-bench, bf16/Q8_0/Q4_K,
#    1 and 2 threads, PNG chart), `bench scaling` (1/2/3 workers in network namespaces,
#    one pinned core each) and `bench cluster`.
# Intermediate files go to $JINDOU_BENCH_DIR (default /tmp/jindou-bench) and are reused
# when present. JINDOU_BENCH_SKIP_APT=1 skips step 1's apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${JINDOU_BENCH_DIR:-/tmp/jindou-bench}
mkdir -p "$work" docs/benchmarks

if [ "${JINDOU_BENCH_SKIP_APT:-0}" != 1 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends libopenblas-dev libpng-dev libjpeg62-turbo-dev pkg-config iproute2 \
    util-linux cmake g++ make python3-pip >/dev/null
fi
swift build -c release
bin=.build/release

llama_bench="$(tools/llama_cpp.sh)/build/bin/llama-bench"

model="$work/q30b-8l"
[ -f "$model/config.json" ] || $bin/jindouctl synth --like qwen3-30b-a3b --layers 8 --vocab-size 32768 --out "$model"
for format in q8_0 q4_k; do
  [ -f "$model-$format.gguf" ] || $bin/jindouctl quantize --experts "$format" --model "$model" --out "$model-$format.gguf"
done

$bin/jindouctl bench kernels --threads 1,2
$bin/jindouctl bench decode --model "bf16=$model" --model "q8_0=$model-q8_0.gguf" --model "q4_k=$model-q4_k.gguf" \
  --llama-bench "$llama_bench" --threads 1,2 --plot docs/benchmarks/decode.png
$bin/jindouctl bench scaling --model "$model-q8_0.gguf" --workers 1,2,3
$bin/jindouctl bench cluster --model "$model" --workers 1,2,3
echo "docs/benchmarks.md, docs/benchmarks/*.json and docs/benchmarks/decode.png updated"
