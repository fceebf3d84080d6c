#!/usr/bin/env bash
# The soak/chaos/fuzz figures of docs/reliability.md, from one command:
#
#   tools/reliability.sh [--minutes 30] [--cases 300000] [--fuzz-seconds 600] [--python /work/venv/bin/python]
#                        [--steps "soak fuzz fuzz-coordinator http"] [--configuration release|debug]
#                        [--doc docs/reliability.md]   (another file for trial runs; JSON goes beside it)
#
# 1. builds release binaries and copies them to a scratch directory (a rebuild during the
#    run cannot change what is being measured);
# 2. soak and chaos: tools/soak.py, --minutes of mixed chat/completion traffic from 8
#    official-openai-client threads against a coordinator and three joining workers with two
#    replicas, while workers are SIGKILLed, stopped, drained, restarted, rebalanced and
#    scaled and the coordinator is restarted once (section 'soak');
# 3. frame fuzzing: jindouctl bench fuzz, --cases connections of mutated and random frames
#    against a worker's node port (section 'fuzz'), then --fuzz-seconds (600) of fake workers
#    answering a coordinator with mutated frames while real requests must all succeed
#    (section 'fuzz-coordinator');
# 4. HTTP fuzzing: tools/http_fuzz.py, schemathesis against /openapi.json of a coordinator with
#    a joined worker, including the node-facing routes (section 'http-fuzz').
# --configuration picks the binaries (default release). Each step rewrites its own section of
# docs/reliability.md; the exit status is non-zero if any step found a failure. The Python
# needs openai, matplotlib and schemathesis; the HTTP step needs root (a network namespace).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=30 cases=300000 python=${JINDOU_PYTHON:-python3} steps="soak fuzz fuzz-coordinator http" configuration=release fuzz_seconds=600 doc=docs/reliability.md
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) minutes=$2; shift 2 ;;
        --cases) cases=$2; shift 2 ;;
        --python) python=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --configuration) configuration=$2; shift 2 ;;
        --fuzz-seconds) fuzz_seconds=$2; shift 2 ;;
        --doc) doc=$2; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
swift build -c "$configuration" --product jindoud
swift build -c "$configuration" --product jindouctl
bin=$(mktemp -d /tmp/jindou-reliability-bin.XXXX)
cp "$(swift build -c "$configuration" --show-bin-path)"/{jindoud,jindouctl} "$bin/"
status=0
for step in $steps; do
    case "$step" in
        soak)
            "$python" tools/soak.py --jindoud "$bin/jindoud" --jindouctl "$bin/jindouctl" --model Tests/Fixtures/qwen3-moe-tiny \
                --minutes "$minutes" --clients 8 --out /tmp/jindou-soak --doc "$doc" || status=1 ;;
        fuzz)
            "$bin/jindouctl" bench fuzz --model Tests/Fixtures/qwen3-moe-tiny --cases "$cases" \
                --out "$doc" --json "$(dirname "$doc")/reliability/fuzz.json" || status=1 ;;
        fuzz-coordinator)
            "$bin/jindouctl" bench fuzz --model Tests/Fixtures/qwen3-moe-tiny --against coordinator --seconds "$fuzz_seconds" \
                --out "$doc" --json "$(dirname "$doc")/reliability/fuzz-coordinator.json" || status=1 ;;
        http)
            "$python" tools/http_fuzz.py --jindoud "$bin/jindoud" --model Tests/Fixtures/qwen3-moe-tiny \
                --doc "$doc" || status=1 ;;
        *) echo "unknown step $step" >&2; exit 2 ;;
    esac
done
exit $status
