#!/usr/bin/env bash
# Builds jindou-probe, the C implementation of the wire protocol (tools/probe/README.md).
#   tools/probe/build.sh [OUTPUT]         (default .build/jindou-probe)
#   tools/probe/build.sh --check-generated
#       regenerates the C code from proto/ with protoc-c and fails if it differs from the
#       committed tools/probe/generated (the .proto changed without regenerating).
# Needs: apt-get install -y libprotobuf-c-dev libssl-dev pkg-config (and protobuf-c-compiler
# for --check-generated).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ "${1:-}" == "--check-generated" ]]; then
    fresh=$(mktemp -d)
    trap 'rm -rf "$fresh"' EXIT
    protoc-c --c_out="$fresh" -I proto proto/jindou/v1/wire.proto
    diff -r "$fresh" tools/probe/generated
    echo "tools/probe/generated matches proto/ (protoc-c $(protoc-c --version | head -1))"
    exit 0
fi

output=${1:-.build/jindou-probe}
mkdir -p "$(dirname "$output")"
# shellcheck disable=SC2046  # pkg-config prints several words on purpose
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -o "$output" \
    tools/probe/jindou-probe.c tools/probe/generated/jindou/v1/wire.pb-c.c -Itools/probe/generated \
    $(pkg-config --cflags --libs libprotobuf-c libcrypto) -lm
echo "built $output"
