#!/usr/bin/env python3
"""schemathesis against a real Jindou cluster's /openapi.json (docs/reliability.md, 'http-fuzz').

Starts `jindoud coordinator` (cluster secret, state dir) and one `jindoud worker --join` on
loopback, waits for /ready, and runs schemathesis over every operation of the served OpenAPI
document — the OpenAI/Anthropic-compatible API, the admin API and the node-facing routes
(workers/join, workers/heartbeat, node/manifest, node/files) — with every check, authenticated
with the cluster secret (its `ignored_auth` check also sends requests without it). Afterwards
both processes must still run, /health must answer 200 and a real chat completion must
succeed. Generated join/heartbeat bodies name arbitrary addresses the coordinator then dials,
so when run as root the whole run happens inside a fresh network namespace that has only a
loopback interface: nothing can leave the machine.

    /work/venv/bin/python tools/http_fuzz.py --jindoud .build/debug/jindoud \\
        --model Tests/Fixtures/qwen3-moe-tiny --doc docs/reliability.md

Exit status 0 when schemathesis found no failure and the cluster survived, else 1.
"""
import argparse
import collections
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from doc_sections import replace_section


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, body=None, token=None, timeout=60):
    """(status, body bytes) of a GET, or of a JSON POST when `body` is given; status None if unreachable."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return None, str(e).encode()


def in_fresh_netns(argv):
    """Re-runs this script inside a new network namespace with only `lo` up; returns its status."""
    name = f"jindou-httpfuzz-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        return subprocess.run(["ip", "netns", "exec", name, sys.executable, os.path.abspath(__file__), "--in-netns"] + argv).returncode
    finally:
        subprocess.run(["ip", "netns", "delete", name])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jindoud", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--doc", help="markdown file whose 'http-fuzz' section gets the results")
    ap.add_argument("--max-examples", type=int, default=150, help="schemathesis test cases per operation and phase")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", default="/tmp/jindou-http-fuzz")
    ap.add_argument("--no-netns", action="store_true", help="run on the host's network (only if nothing can route out)")
    ap.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.in_netns and not args.no_netns:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            sys.exit("needs root and iproute2 for the network namespace (or --no-netns where nothing routes out)")
        sys.exit(in_fresh_netns([a for a in sys.argv[1:]]))

    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    schemathesis = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    if not os.path.exists(schemathesis):
        sys.exit(f"schemathesis is not installed beside {sys.executable} (pip install schemathesis)")
    os.makedirs(args.out, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="jindou-httpfuzz-")
    token = secrets.token_hex(32)
    token_file = os.path.join(scratch, "token")
    with open(os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(token)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    model = os.path.abspath(args.model)
    logs = {}

    def start(name, cmd):
        logs[name] = open(os.path.join(args.out, f"{name}.stderr"), "w")
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=logs[name])

    processes = {}
    status = 1
    try:
        processes["coordinator"] = start("coordinator", [
            args.jindoud, "coordinator", "--model", model, "--listen", f"127.0.0.1:{port}", "--token-file", token_file,
            "--state-dir", os.path.join(scratch, "state"), "--log-level", "warning"])
        processes["worker"] = start("worker", [
            args.jindoud, "worker", "--model", model, "--listen", "127.0.0.1:0", "--join", base, "--name", "w0",
            "--token-file", token_file, "--log-level", "warning"])
        deadline = time.time() + 120
        while request(f"{base}/ready", timeout=5)[0] != 200:
            if time.time() > deadline or any(p.poll() is not None for p in processes.values()):
                sys.exit(f"the cluster did not become ready; logs in {args.out}")
            time.sleep(0.5)
        started = time.time()
        report = os.path.join(args.out, "schemathesis.json")
        command = [schemathesis, "run", f"{base}/openapi.json", "--checks", "all", "-H", f"Authorization: Bearer {token}",
                   "--max-examples", str(args.max_examples), "--seed", str(seed), "--workers", "2", "--request-timeout", "60",
                   "--no-color", "--report", "json,ndjson", "--report-json-path", report,
                   "--report-ndjson-path", os.path.join(args.out, "events.ndjson"), "--continue-on-failure",
                   "--suppress-health-check", "all", "--generation-database", "none"]
        run = subprocess.run(command, capture_output=True, text=True)
        seconds = time.time() - started
        with open(os.path.join(args.out, "schemathesis.txt"), "w") as f:
            f.write(run.stdout + run.stderr)
        alive = {name: p.poll() is None for name, p in processes.items()}
        health = request(f"{base}/health", timeout=5)[0]
        chat = request(f"{base}/v1/chat/completions", {"model": os.path.basename(model.rstrip("/")), "max_tokens": 8, "temperature": 0,
                                                   "messages": [{"role": "user", "content": "hello"}]}, token)
        summary = summarise(args.out, run, seconds, seed, alive, health, chat[0], command)
        with open(os.path.join(args.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        print(json.dumps(summary, indent=1))
        if args.doc:
            write_section(args.doc, summary)
        status = 0 if summary["passed"] else 1
    finally:
        for p in processes.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in processes.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(scratch, ignore_errors=True)
    sys.exit(status)


def summarise(out, run, seconds, seed, alive, health, chat_status, command):
    """Counts from schemathesis's ndjson event stream: operations, test cases, checks, failures."""
    cases = 0
    operations = set()
    checks = collections.Counter()
    failures = collections.OrderedDict()
    statuses = collections.Counter()
    disagreements = collections.Counter()
    errors = []
    with open(os.path.join(out, "events.ndjson")) as f:
        for line in f:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            for kind, body in event.items():
                if kind == "ScenarioFinished":
                    for case in (body.get("recorder") or {}).get("cases", {}).values():
                        cases += 1
                    for interaction in (body.get("recorder") or {}).get("interactions", {}).values():
                        response = interaction.get("response") or {}
                        if "status_code" in response:
                            statuses[response["status_code"]] += 1
                    for case_id, case_checks in (body.get("recorder") or {}).get("checks", {}).items():
                        for check in case_checks:
                            checks[(check.get("name"), check.get("status"))] += 1
                            if check.get("status") == "failure":
                                failure = check.get("failure_info") or {}
                                key = f"{check.get('name')}: {(failure.get('failure') or {}).get('title', '')}"
                                entry = failures.setdefault(key, {"count": 0, "example": None})
                                entry["count"] += 1
                                response = ((body.get("recorder") or {}).get("interactions", {}).get(case_id) or {}).get("response") or {}
                                detail = (check.get("name"), body.get("recorder", {}).get("label"), response.get("status_code"),
                                          answer_message(response))
                                disagreements[detail] += 1
                    label = (body.get("recorder") or {}).get("label") or body.get("label")
                    if label:
                        operations.add(label)
                elif kind == "NonFatalError":
                    errors.append(str(body.get("info", body))[:300])
    top = [{"check": c, "operation": o, "status": st, "message": m, "count": n}
           for (c, o, st, m), n in disagreements.most_common(15)]
    check_totals = collections.defaultdict(dict)
    for (name, state), count in checks.items():
        check_totals[name][state] = count
    passed = run.returncode == 0 and all(alive.values()) and health == 200 and chat_status == 200 and not failures and not errors
    return {"seed": seed, "seconds": round(seconds, 1), "schemathesis_exit": run.returncode, "operations": sorted(operations),
            "test_cases": cases, "responses_by_status": dict(sorted(statuses.items())), "checks": dict(check_totals),
            "failures": failures, "top_failures": top, "errors": errors, "processes_alive_after": alive, "health_after": health,
            "chat_completion_after": chat_status, "passed": passed,
            "schemathesis_version": subprocess.run([command[0], "--version"], capture_output=True, text=True).stdout.strip(),
            "command": " ".join("Authorization: Bearer …" if c.startswith("Authorization:") else c for c in command)}


def answer_message(response):
    """The error message of a recorded response, numbers replaced by N (for grouping)."""
    body = response.get("content") or response.get("body") or ""
    if isinstance(body, dict) and "$base64" in body:
        import base64
        body = base64.b64decode(body["$base64"]).decode(errors="replace")
    import re
    match = re.search(r'"message"\s*:\s*"((?:[^"\\]|\\.){0,100})', str(body))
    return re.sub(r"\d+", "N", match.group(1) if match else str(body)[:60])


def write_section(doc, summary):
    os.makedirs(os.path.join(os.path.dirname(os.path.abspath(doc)), "reliability"), exist_ok=True)
    with open(os.path.join(os.path.dirname(os.path.abspath(doc)), "reliability", "http-fuzz.json"), "w") as f:
        json.dump(summary, f, indent=1)
    lines = [
        "## HTTP API fuzzing (`tools/http_fuzz.py`, schemathesis)",
        "",
        f"{summary['schemathesis_version']} against `/openapi.json` of a `jindoud coordinator` with one joined worker "
        f"(cluster secret set), in a network namespace with only loopback; seed {summary['seed']}, every check, "
        f"{summary['seconds']:.0f} s. Operations: {len(summary['operations'])}; test cases: {summary['test_cases']}.",
        "",
        "| responses by status | count |",
        "|---|---:|",
    ]
    lines += [f"| {status} | {count} |" for status, count in summary["responses_by_status"].items()]
    lines += ["", "| check | passed | failed | skipped |", "|---|---:|---:|---:|"]
    for name, states in sorted(summary["checks"].items()):
        lines.append(f"| {name} | {states.get('success', 0)} | {states.get('failure', 0)} | {states.get('skip', 0)} |")
    lines += ["", f"Failures: {sum(v['count'] for v in summary['failures'].values())}; errors: {len(summary['errors'])}. "
              f"After the run: processes alive {summary['processes_alive_after']}, /health {summary['health_after']}, "
              f"a chat completion {summary['chat_completion_after']}."]
    for key, value in summary["failures"].items():
        lines.append(f"- `{key}` × {value['count']}")
    if summary.get("top_failures"):
        lines += ["", "Where schema and implementation disagree most (check, operation, status, the server's message):", "",
                  "| check | operation | status | message | count |", "|---|---|---:|---|---:|"]
        for f in summary["top_failures"]:
            message = f["message"].replace("|", "\\|")
            lines.append(f"| {f['check']} | `{f['operation']}` | {f['status']} | {message} | {f['count']} |")
    for error in summary["errors"][:10]:
        lines.append(f"- error: {error}")
    section = "\n".join(lines)
    replace_section(doc, "http-fuzz", section)


if __name__ == "__main__":
    main()
