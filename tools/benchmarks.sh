#!/usr/bin/env bash
# Reproduces every section of docs/benchmarks.md from a fresh clone, in one command:
#
#   tools/benchmarks.sh            # as root on Debian 12; ~2.5 h on 2 cores, ~45 GB of disk
#
# 1. installs the build dependencies (apt) and builds Jindou in release mode;
# 2. builds llama.cpp's llama-bench with tools/llama_cpp.sh, from the sources vendored in PyPI's
#    llama-cpp-python source distribution (the only llama.cpp source reachable without other
#    internet; it goes to $JINDOU_LLAMA_DIR, default /tmp/jindou-llama, and is reused);
# 3. writes a synthetic Qwen3-30B-A3B-shape model (8 layers, bf16) and, from it, GGUF files
#    of llama-quantize's mixes (`jindouctl quantize --to MIX`; IQ2_XXS and IQ1_S with
#    llama-quantize and an imatrix) — llama.cpp and Jindou read the same files;
# 4. runs `jindouctl bench kernels`, `bench decode` (Jindou vs llama-bench on every mix,
#    1 and 2 threads, PNG chart), `bench scaling` (1/2/3 workers in network namespaces,
#    one pinned core each), `bench cluster`, `bench network` (Jindou vs llama.cpp RPC over
#    emulated links, PNG charts) and `bench project` (docs/performance.md).
# Intermediate files go to $JINDOU_BENCH_DIR (default /tmp/jindou-bench) and are reused
# when present. JINDOU_BENCH_SKIP_APT=1 skips step 1's apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${JINDOU_BENCH_DIR:-/tmp/jindou-bench}
mkdir -p "$work" docs/benchmarks

if [ "${JINDOU_BENCH_SKIP_APT:-0}" != 1 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends libopenblas-dev libpng-dev libjpeg62-turbo-dev libibverbs-dev librdmacm-dev pkg-config iproute2 \
    util-linux cmake g++ make python3-pip >/dev/null
fi
swift build -c release
bin=.build/release

llama="$(tools/llama_cpp.sh | tail -1)"
llama_bench="$llama/build/bin/llama-bench"
tools/llama_cpp.sh --rpc >/dev/null   # ggml-rpc-server, llama-bench and llama-batched-bench in $llama/build-rpc/bin

model="$work/q30b-8l"
[ -f "$model/config.json" ] || $bin/jindouctl synth --like qwen3-30b-a3b --layers 8 --vocab-size 32768 --out "$model"
# llama-imatrix tokenizes its corpus, so the GGUF files carry a tokenizer: the bundled tiny
# Qwen3 one (jindouctl quantize pads its vocabulary to the model's 32768 rows, as llama.cpp's
# converter does). Decode speed does not depend on it.
[ -f "$model/tokenizer.json" ] || cp Tests/Fixtures/qwen3-moe-tiny/tokenizer.json Tests/Fixtures/qwen3-moe-tiny/tokenizer_config.json "$model/"
# llama-quantize's mixes, written by jindouctl byte for byte as llama-quantize writes them;
# the mixes Jindou reads but does not write by llama-quantize from the BF16 file: MXFP4_MOE,
# and the grid IQ mixes with an imatrix.
for mix in BF16 Q8_0 Q6_K Q5_K_M Q4_K_M Q4_0 IQ4_XS Q2_K; do
  [ -f "$model-$mix.gguf" ] || $bin/jindouctl quantize --to "$mix" --model "$model" --out "$model-$mix.gguf"
done
[ -f "$model-MXFP4_MOE.gguf" ] || "$llama/build/bin/llama-quantize" "$model-BF16.gguf" "$model-MXFP4_MOE.gguf" MXFP4_MOE 2 >/dev/null
imatrix="$work/q30b-8l.imatrix.gguf"
[ -f "$imatrix" ] || "$llama/build/bin/llama-imatrix" -m "$model-BF16.gguf" -f Tests/Fixtures/gguf-mixes/imatrix-corpus.txt \
  -c 64 --chunks 4 -t 2 -o "$imatrix" >/dev/null 2>&1
for mix in IQ2_XXS IQ1_S; do
  [ -f "$model-$mix.gguf" ] || "$llama/build/bin/llama-quantize" --imatrix "$imatrix" "$model-BF16.gguf" "$model-$mix.gguf" "$mix" 2 >/dev/null
done

$bin/jindouctl bench kernels --threads 1,2
models=(--model "bf16=$model")
for mix in Q8_0 Q6_K Q5_K_M Q4_K_M Q4_0 IQ4_XS Q2_K IQ2_XXS IQ1_S MXFP4_MOE; do models+=(--model "$mix=$model-$mix.gguf"); done
$bin/jindouctl bench decode "${models[@]}" --llama-bench "$llama_bench" --threads 1,2 --plot docs/benchmarks/decode.png
$bin/jindouctl bench scaling --model "$model-Q8_0.gguf" --workers 1,2,3
$bin/jindouctl bench cluster --model "$model" --workers 1,2,3
$bin/jindouctl bench network --model "Q4_K_M=$model-Q4_K_M.gguf" --model "Q8_0=$model-Q8_0.gguf" --workers 2 \
  --rtt 0,200us,1ms --rate 1gbit,10gbit --streams 8,32 --llama-bin "$llama/build-rpc/bin" \
  --plot docs/benchmarks/network.png --model-plot docs/benchmarks/network-model.png
$bin/jindouctl bench project --gguf "$model-Q4_K_M.gguf" --rpc-round-trips 1
echo "docs/benchmarks.md, docs/performance.md, docs/benchmarks/*.json and the PNG charts updated"
