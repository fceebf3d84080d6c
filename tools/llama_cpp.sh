#!/usr/bin/env bash
# Builds llama.cpp — the GGUF oracle — from the sources vendored in PyPI's llama-cpp-python
# source distribution (the only llama.cpp source reachable here without other internet):
#
#   tools/llama_cpp.sh                 # prints the llama.cpp source tree on stdout (last line)
#   llama=$(tools/llama_cpp.sh)        # then $llama/build/bin/{llama-quantize,…}
#
# Builds, in $llama/build/bin: llama-quantize, llama-imatrix, llama-gguf-split, llama-bench,
# the shared libraries (libllama.so, libggml*.so) and llama_cpp_logits (tools/llama_cpp_logits.c
# compiled against libllama, as tools/compare_with_llama_cpp.py does). Release, GGML_NATIVE=ON
# (so numbers depend on this CPU's instruction set), no tests/examples/server/app, no curl or
# OpenSSL. Idempotent: an unpacked tree and up-to-date targets are reused; re-running costs a
# few seconds. Progress goes to stderr.
#
#   JINDOU_LLAMA_DIR    where to unpack and build (default /tmp/jindou-llama)
#   JINDOU_LLAMA_SDIST  the llama_cpp_python-$version.tar.gz to use; otherwise one found in
#                       $JINDOU_LLAMA_DIR, otherwise `pip download`ed from PyPI into it
#   JINDOU_LLAMA_JOBS   parallel build jobs (default: nproc)
#
#   tools/llama_cpp.sh --chat          # also llama-common and $llama/build/bin/llama_cpp_chat_parse
#                                      # (tools/llama_cpp_chat_parse.cpp: llama.cpp's chat-output
#                                      # parser, the oracle of tools/fixture_parsers.py --llama-cpp)
#   tools/llama_cpp.sh --rpc           # a second build, $llama/build-rpc, with GGML_RPC=ON:
#                                      # ggml-rpc-server, llama-bench, llama-batched-bench (the
#                                      # layer-split peer of tools/bench_network.sh and
#                                      # `jindouctl bench network`)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
version=0.3.36
dir=${JINDOU_LLAMA_DIR:-/tmp/jindou-llama}
jobs=${JINDOU_LLAMA_JOBS:-$(nproc)}
tree="$dir/llama_cpp_python-$version/vendor/llama.cpp"
build="$tree/build"
rpc=0
chat=0
[ "${1:-}" = "--rpc" ] && rpc=1
[ "${1:-}" = "--chat" ] && chat=1
mkdir -p "$dir"

if [ ! -f "$tree/CMakeLists.txt" ]; then
  sdist=${JINDOU_LLAMA_SDIST:-$dir/llama_cpp_python-$version.tar.gz}
  if [ ! -f "$sdist" ]; then
    python3 -m pip download --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$dir" >&2
    sdist="$dir/llama_cpp_python-$version.tar.gz"
  fi
  echo "llama_cpp.sh: unpacking $sdist into $dir" >&2
  tar xzf "$sdist" -C "$dir"
fi

# The sdist carries the submodule's git metadata (HEAD, no objects): the commit it pins.
commit=$(cat "$dir/llama_cpp_python-$version/.git/modules/vendor/llama.cpp/HEAD" 2>/dev/null || echo unknown)

if [ "$rpc" = 1 ]; then
  build="$tree/build-rpc"
  if [ ! -f "$build/CMakeCache.txt" ]; then
    echo "llama_cpp.sh: configuring $build (llama.cpp $commit, GGML_RPC=ON)" >&2
    cmake -S "$tree" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_RPC=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
      -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_COMMON=ON -DBUILD_SHARED_LIBS=ON \
      -DLLAMA_BUILD_NUMBER=0 -DLLAMA_BUILD_COMMIT="${commit:0:12}" >&2
  fi
  cmake --build "$build" -j"$jobs" --target ggml-rpc-server llama-bench llama-batched-bench >&2
  echo "$tree"
  exit 0
fi

if [ ! -f "$build/CMakeCache.txt" ]; then
  echo "llama_cpp.sh: configuring $build (llama.cpp $commit)" >&2
  cmake -S "$tree" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_COMMON=ON -DBUILD_SHARED_LIBS=ON \
    -DLLAMA_BUILD_NUMBER=0 -DLLAMA_BUILD_COMMIT="${commit:0:12}" >&2
fi
# tools/ in this llama.cpp: quantize, imatrix, gguf-split, llama-bench (each a target of that name).
cmake --build "$build" -j"$jobs" --target llama llama-quantize llama-imatrix llama-gguf-split llama-bench >&2

harness="$build/bin/llama_cpp_logits"
if [ ! -x "$harness" ] || [ "$repo/tools/llama_cpp_logits.c" -nt "$harness" ] || [ "$build/bin/libllama.so" -nt "$harness" ]; then
  cc -O1 "$repo/tools/llama_cpp_logits.c" -I "$tree/include" -I "$tree/ggml/include" -L "$build/bin" \
    -lllama -lggml -lggml-base "-Wl,-rpath,$build/bin" -o "$harness" >&2
fi
if [ "$chat" = 1 ]; then
  cmake --build "$build" -j"$jobs" --target llama-common >&2
  parse="$build/bin/llama_cpp_chat_parse"
  if [ ! -x "$parse" ] || [ "$repo/tools/llama_cpp_chat_parse.cpp" -nt "$parse" ]; then
    c++ -std=c++17 -O1 "$repo/tools/llama_cpp_chat_parse.cpp" -I "$tree/common" -I "$tree/include" -I "$tree/ggml/include" \
      -I "$tree/vendor" "$build/common/libllama-common-base.a" -L "$build/bin" -lllama-common -lllama -lggml -lggml-base \
      -pthread "-Wl,-rpath,$build/bin" -o "$parse" >&2
  fi
fi
echo "$tree"
