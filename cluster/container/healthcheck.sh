#!/bin/bash
# Container HEALTHCHECK for jindoud: HEALTHCHECK_ADDRESS is an http(s) URL (liveness: the
# coordinator's /health, or a worker's on its --http port) or tcp://HOST:PORT (the node port of
# a worker started without --http).
set -euo pipefail
address="${HEALTHCHECK_ADDRESS:-http://127.0.0.1:8080/health}"
case "$address" in
    tcp://*)
        hostport="${address#tcp://}"
        exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}"
        exec 3>&-
        ;;
    http://*|https://*)
        exec curl --fail --silent --show-error --max-time 4 --output /dev/null "$address"
        ;;
    *)
        echo "HEALTHCHECK_ADDRESS must be http(s)://… or tcp://HOST:PORT, got '$address'" >&2
        exit 2
        ;;
esac
