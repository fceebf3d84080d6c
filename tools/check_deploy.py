#!/usr/bin/env python3
"""Checks the deployment files in cluster/ against the tools that judge them and a real cluster.

    /work/venv/bin/python tools/check_deploy.py --jindoud .build/debug/jindoud [--require-all]

One line per check (PASS, FAIL or SKIP and why); the exit status is non-zero when any check
fails. A checker tool that is not installed (systemd-analyze, promtool, hadolint,
kubernetes-validate, yamllint) is a SKIP, or a FAIL with --require-all.

What is checked (cluster/README.md lists the files):
- systemd units: `systemd-analyze verify` on copies whose ExecStart names the built binary
  instead of /usr/local/bin/jindoud (any diagnostic about the units fails), and each
  ExecStart's flags accepted by that binary (`--print-config`, with %i/%d substituted).
- Containerfile: hadolint; the healthcheck script: `bash -n`.
- Kubernetes manifests: kubernetes-validate --strict for each version in K8S_VERSIONS.
- Helm chart: rendered by a strict renderer of the subset of Helm's language the templates
  use (below), then kubernetes-validate like the manifests.
- jindoud config files (cluster/systemd/*.yaml, the ConfigMap's files in the manifests and in
  the rendered chart): accepted by `jindoud SUB --config F --print-config`; for the pods, with
  the container's arguments and JINDOU_* environment variables, each of which must name a flag.
- Prometheus: `promtool check config` (next to a stand-in token file, as installed),
  `promtool check rules`, `promtool test rules`; every alert's runbook anchor is a heading of
  docs/operations.md.
- Grafana dashboard: well-formed, unique panel ids, every panel with a query.
- Live: `jindoud local` on the bundled tiny model, on free ports, with a cluster secret; waits
  for /ready, checks /health and /ready need no token and /metrics does, sends one completion.
  Beside it one `jindoud worker --http` with the same secret: /health and /ready 200 without a
  token, /metrics 401 without one. Then each process's /metrics is scraped and the check fails
  if a metric named by an alert, a recording rule or the dashboard is absent from the process
  that serves it (jindou_node_*: the worker; every other: the coordinator).
- yamllint (relaxed, no line-length limit, warnings fail) on every YAML file and the
  rendered chart.

Helm subset: `{{ .Values.a.b }}`, `{{ .Release.Name }}`, `{{ .Release.Namespace }}`,
`{{ .Chart.Name }}`, `{{ .Chart.Version }}`, `{{ .Chart.AppVersion }}`, each optionally followed
by `| quote`. Anything else inside `{{ }}`, a missing or non-scalar value, or a number Helm
would print in exponent notation (≥ 1e6) is an error.

Every process this starts is ended before it exits, on failure too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "cluster"
K8S_VERSIONS = ["1.30.0", "1.37.0"]
MODEL = ROOT / "Tests" / "Fixtures" / "qwen3-moe-tiny"
# Series Prometheus itself adds to every scrape.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
                     "scrape_series_added"}
YAMLLINT_CONFIG = "{extends: relaxed, rules: {line-length: disable}}"


class Report:
    def __init__(self) -> None:
        self.failures = 0

    def line(self, status: str, name: str, detail: str) -> None:
        if status == "FAIL":
            self.failures += 1
        print(f"{status} {name}: {detail}", flush=True)

    def passed(self, name: str, detail: str) -> None:
        self.line("PASS", name, detail)

    def failed(self, name: str, detail: str) -> None:
        self.line("FAIL", name, detail)


class Tools:
    """The checker tools: beside this interpreter (a venv's bin/) first, then on PATH."""

    def __init__(self, report: Report, require_all: bool) -> None:
        self.report = report
        self.require_all = require_all

    def find(self, name: str) -> str | None:
        beside = Path(sys.executable).parent / name
        if beside.exists() and os.access(beside, os.X_OK):
            return str(beside)
        return shutil.which(name)

    def require(self, name: str, check: str) -> str | None:
        path = self.find(name)
        if path is None:
            self.report.line("FAIL" if self.require_all else "SKIP", check, f"{name} is not installed")
        return path


def run(command: list[str], timeout: float = 60, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Runs a command to completion; a missing program or a timeout is a failed result, not an exception."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    except FileNotFoundError as error:
        return subprocess.CompletedProcess(command, 127, "", f"{command[0]}: {error.strerror}")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(command, 124, "", f"{' '.join(command[:3])} … did not finish within {timeout:.0f} s")


def output_of(result: subprocess.CompletedProcess) -> str:
    text = (result.stdout + result.stderr).strip()
    return " | ".join(line.strip() for line in text.splitlines()[:12]) or f"exit status {result.returncode}"


def yaml_documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def clean_environment() -> dict[str, str]:
    """This environment without JINDOU_* variables, which jindoud would read as flags."""
    return {k: v for k, v in os.environ.items() if not k.startswith("JINDOU_")}


# ----------------------------------------------------------------------------- helm subset

HELM_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
HELM_EXPRESSION = re.compile(r"^ (\.[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*)(?: \| (quote))? $")


class RenderError(Exception):
    pass


def helm_scalar(value: object, where: str) -> str:
    """A scalar as Helm's templates print it (values are parsed as JSON: numbers are float64)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not value.is_integer():
            text = repr(value)
            if "e" in text or "inf" in text or "nan" in text:
                raise RenderError(f"{where}: {value} is printed differently by Helm; make it a string")
            return text
        if abs(value) >= 1_000_000:
            raise RenderError(f"{where}: Helm prints {value} as {float(value):.6e}; make it a string")
        return str(int(value))
    if isinstance(value, str):
        return value
    raise RenderError(f"{where}: is {'missing (null)' if value is None else type(value).__name__}, not a scalar")


def helm_quote(text: str, where: str) -> str:
    """Go's %q for the strings a chart holds (printable text, newlines and tabs)."""
    out = []
    for character in text:
        if character == "\\":
            out.append("\\\\")
        elif character == '"':
            out.append('\\"')
        elif character == "\n":
            out.append("\\n")
        elif character == "\t":
            out.append("\\t")
        elif character.isprintable():
            out.append(character)
        else:
            raise RenderError(f"{where}: unprintable character {character!r} in a quoted value")
    return '"' + "".join(out) + '"'


def render_helm(chart: Path, release: str, namespace: str) -> dict[str, str]:
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    values = yaml.safe_load((chart / "values.yaml").read_text()) or {}
    scope = {
        "Values": values,
        "Release": {"Name": release, "Namespace": namespace},
        "Chart": {"Name": meta["name"], "Version": meta["version"], "AppVersion": meta.get("appVersion")},
    }
    rendered = {}
    for template in sorted((chart / "templates").glob("*.yaml")):
        text = template.read_text()

        def substitute(match: re.Match) -> str:
            line = text.count("\n", 0, match.start()) + 1
            where = f"{template.relative_to(chart)}:{line}: {{{{{match.group(1)}}}}}"
            parsed = HELM_EXPRESSION.match(match.group(1))
            if not parsed:
                raise RenderError(f"{where}: not in the supported subset (cluster/README.md)")
            path, pipe = parsed.groups()
            node: object = scope
            walked = ""
            for part in path[1:].split("."):
                walked += "." + part
                if not isinstance(node, dict) or part not in node:
                    raise RenderError(f"{where}: {walked} is not defined")
                node = node[part]
            value = helm_scalar(node, where)
            return helm_quote(value, where) if pipe == "quote" else value

        body = HELM_ACTION.sub(substitute, text)
        for marker in ("{{", "}}"):
            if marker in body:
                raise RenderError(f"{template.relative_to(chart)}: unbalanced '{marker}'")
        rendered[template.name] = body
    return rendered


# ----------------------------------------------------------------------------- PromQL names

PROMQL_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                   "offset", "inf", "nan"}


def metric_names(expression: str) -> set[str]:
    """The metric (and recording-rule) names a PromQL expression selects."""
    text = PROMQL_STRING.sub('""', expression)
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers (Grafana variables included)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        if match.start() > 0 and (text[match.start() - 1].isalnum() or text[match.start() - 1] in "._$"):
            continue  # a number's exponent or unit, or a Grafana variable
        if text[match.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        if word.lower() in PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names


def dashboard_expressions(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel query and query variable of a Grafana dashboard."""
    found = []

    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            found.append((f"panel '{panel.get('title')}'", target.get("expr", "")))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        label_values = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*", query)
        found.append((f"variable '{variable.get('name')}'", label_values.group(1) if label_values else query))
    return found


def rule_expressions(rules_file: Path) -> tuple[list[tuple[str, str]], set[str], list[dict]]:
    """(where, PromQL) of every rule, the recorded names, and the alerting rules."""
    expressions, recorded, alerts = [], set(), []
    for group in yaml.safe_load(rules_file.read_text())["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                recorded.add(rule["record"])
                expressions.append((f"recording rule {rule['record']}", rule["expr"]))
            else:
                alerts.append(rule)
                expressions.append((f"alert {rule['alert']}", rule["expr"]))
    return expressions, recorded, alerts


def markdown_anchors(path: Path) -> set[str]:
    anchors = set()
    for line in path.read_text().splitlines():
        heading = re.match(r"#+\s+(.*)", line)
        if heading:
            title = heading.group(1).strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


# ----------------------------------------------------------------------------- checks

def check_yamllint(report: Report, tools: Tools, rendered_dir: Path | None) -> None:
    name = "yamllint"
    tool = tools.require("yamllint", name)
    if not tool:
        return
    files = sorted(p for p in CLUSTER.rglob("*.y*ml") if "templates" not in p.parts)
    if rendered_dir:
        files += sorted(rendered_dir.glob("*.yaml"))
    result = run([tool, "--strict", "-f", "parsable", "-d", YAMLLINT_CONFIG, *map(str, files)])
    if result.returncode == 0 and not result.stdout.strip():
        report.passed(name, f"{len(files)} files (relaxed, no line-length limit; the chart as rendered)")
    else:
        report.failed(name, output_of(result))


def check_systemd(report: Report, tools: Tools, jindoud: Path, scratch: Path) -> None:
    units = {"jindou-coordinator.service": "jindou-coordinator.service", "jindou-worker@.service": "jindou-worker@host-0.service"}
    configs = {"/etc/jindou/coordinator.yaml": CLUSTER / "systemd" / "coordinator.yaml",
               "/etc/jindou/worker-%i.yaml": CLUSTER / "systemd" / "worker.yaml"}
    tool = tools.require("systemd-analyze", "systemd-analyze verify")
    directory = scratch / "systemd"
    directory.mkdir()
    credentials = scratch / "credentials"
    credentials.mkdir()
    (credentials / "token").write_text("00" * 32 + "\n")
    for unit, instance in units.items():
        text = (CLUSTER / "systemd" / unit).read_text()
        if "/usr/local/bin/jindoud" not in text:
            report.failed(f"systemd {unit}", "ExecStart does not name /usr/local/bin/jindoud")
            continue
        (directory / unit).write_text(text.replace("/usr/local/bin/jindoud", str(jindoud)))
        if tool:
            result = run([tool, "verify", "--man=no", str(directory / instance)], env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})
            ours = [line for line in (result.stdout + result.stderr).splitlines()
                    if str(directory) in line or unit.split("@")[0].split(".")[0] in line]
            if result.returncode == 0 and not ours:
                report.passed(f"systemd-analyze verify {instance}", "no diagnostics (ExecStart pointed at the built binary)")
            else:
                report.failed(f"systemd-analyze verify {instance}", " | ".join(ours) or output_of(result))
        # The flags ExecStart passes exist: the binary accepts them with --print-config.
        exec_lines = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("ExecStart=")]
        if len(exec_lines) != 1:
            report.failed(f"systemd {unit} ExecStart", f"expected one ExecStart=, found {len(exec_lines)}")
            continue
        arguments = shlex.split(exec_lines[0])
        substituted = []
        for argument in arguments[1:]:
            argument = str(configs.get(argument, argument))
            substituted.append(argument.replace("%i", "host-0").replace("%d", str(credentials)))
        result = run([str(jindoud), *substituted, "--print-config"], env=clean_environment())
        if result.returncode == 0:
            report.passed(f"systemd {unit} ExecStart flags", f"jindoud {' '.join(arguments[1:])} --print-config accepted")
        else:
            report.failed(f"systemd {unit} ExecStart flags", output_of(result))


def check_config_files(report: Report, jindoud: Path) -> None:
    for subcommand, path in (("coordinator", CLUSTER / "systemd" / "coordinator.yaml"), ("worker", CLUSTER / "systemd" / "worker.yaml")):
        result = run([str(jindoud), subcommand, "--config", str(path), "--print-config"], env=clean_environment())
        name = f"config {path.relative_to(ROOT)}"
        if result.returncode == 0 and f"from {path}" in result.stdout:
            keys = result.stdout.count(f"from {path}")
            report.passed(name, f"jindoud {subcommand} --config --print-config accepts all {keys} keys")
        else:
            report.failed(name, output_of(result))


def check_pod_configs(report: Report, jindoud: Path, documents: list[dict], label: str, scratch: Path) -> None:
    """Runs each jindoud container's arguments, config files and JINDOU_* variables with --print-config."""
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in documents if d.get("kind") == "ConfigMap"}
    sets = [d for d in documents if d.get("kind") in ("StatefulSet", "DaemonSet", "Deployment")]
    if not sets:
        report.failed(f"{label} pod configs", "no workloads found")
    for workload in sets:
        spec = workload["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in spec["containers"]:
            name = f"{label} {workload['metadata']['name']} config"
            arguments = list(container.get("args", []))
            mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
            try:
                for index, argument in enumerate(arguments):
                    if argument == "--config":
                        mount = mounts[arguments[index + 1]]
                        config_map = volumes[mount["name"]]["configMap"]["name"]
                        content = config_maps[config_map][mount["subPath"]]
                        file = scratch / f"{label}-{workload['metadata']['name']}-{mount['subPath']}".replace("/", "_")
                        file.write_text(content)
                        arguments[index + 1] = str(file)
            except KeyError as missing:
                report.failed(name, f"--config is not a file mounted from a ConfigMap key ({missing})")
                continue
            fields = {"metadata.name": f"{workload['metadata']['name']}-0", "metadata.namespace": workload["metadata"].get("namespace", "default")}
            env = clean_environment()
            plain = {}
            for variable in container.get("env", []):
                if "value" in variable:
                    plain[variable["name"]] = variable["value"]
                elif "fieldRef" in variable.get("valueFrom", {}):
                    plain[variable["name"]] = fields[variable["valueFrom"]["fieldRef"]["fieldPath"]]
            expanded = {}
            for key, value in plain.items():
                expanded[key] = re.sub(r"\$\((\w+)\)", lambda m: expanded.get(m.group(1), plain.get(m.group(1), m.group(0))), value)
            jindou_variables = {k: v for k, v in expanded.items() if k.startswith("JINDOU_")}
            env.update(jindou_variables)
            result = run([str(jindoud), *arguments, "--print-config"], env=env)
            unused = [k for k in jindou_variables if f"from {k}" not in result.stdout]
            if result.returncode != 0:
                report.failed(name, output_of(result))
            elif unused:
                report.failed(name, f"{', '.join(unused)} set no flag (not a JINDOU_<FLAG> of jindoud {arguments[0]})")
            else:
                shown = ", ".join(f"{k}={v}" for k, v in jindou_variables.items())
                report.passed(name, f"jindoud {arguments[0]} accepts the ConfigMap file" + (f" and {shown}" if shown else ""))


def check_hadolint(report: Report, tools: Tools) -> None:
    containerfile = CLUSTER / "container" / "Containerfile"
    tool = tools.require("hadolint", "hadolint Containerfile")
    if tool:
        result = run([tool, "--no-color", str(containerfile)])
        if result.returncode == 0 and not result.stdout.strip():
            report.passed("hadolint Containerfile", "no findings")
        else:
            report.failed("hadolint Containerfile", output_of(result))
    script = CLUSTER / "container" / "healthcheck.sh"
    result = run(["bash", "-n", str(script)])
    if result.returncode == 0 and os.access(script, os.X_OK):
        report.passed("container healthcheck.sh", "bash -n: no syntax errors; executable")
    else:
        report.failed("container healthcheck.sh", output_of(result) if result.returncode else "not executable")


def check_kubernetes(report: Report, tools: Tools, files: list[Path], label: str) -> None:
    tool = tools.require("kubernetes-validate", f"kubernetes-validate {label}")
    if not tool:
        return
    for version in K8S_VERSIONS:
        result = run([tool, "--strict", "--quiet", "-k", version, *map(str, files)])
        count = sum(len(yaml_documents(f)) for f in files)
        if result.returncode == 0:
            report.passed(f"kubernetes-validate {label} (k8s {version}, strict)", f"{count} resources in {len(files)} files")
        else:
            report.failed(f"kubernetes-validate {label} (k8s {version}, strict)", output_of(result))


def check_ports(report: Report, documents: list[dict]) -> None:
    """The ports the example configs listen on (--listen, and a worker's --http) are the ones the
    image exposes and the pods declare."""
    exposed = set()
    for line in (CLUSTER / "container" / "Containerfile").read_text().splitlines():
        if line.startswith("EXPOSE"):
            exposed |= {int(p.split("/")[0]) for p in line.split()[1:]}
    listens = {}
    for name in ("coordinator", "worker"):
        config = yaml.safe_load((CLUSTER / "systemd" / f"{name}.yaml").read_text())
        for key in ("listen", "http"):
            if key in config:
                listens[f"{name} {key}"] = int(str(config[key]).rsplit(":", 1)[1])
    declared = set()
    for document in documents:
        if document.get("kind") == "StatefulSet":
            for container in document["spec"]["template"]["spec"]["containers"]:
                declared |= {p["containerPort"] for p in container.get("ports", [])}
    problems = []
    if set(listens.values()) != exposed:
        problems.append(f"Containerfile exposes {sorted(exposed)}, the configs listen on {sorted(listens.values())}")
    if declared != exposed:
        problems.append(f"the StatefulSets declare {sorted(declared)}, the image exposes {sorted(exposed)}")
    if problems:
        report.failed("ports", "; ".join(problems))
    else:
        shown = ", ".join(f"{k} {v}" for k, v in listens.items())
        report.passed("ports", f"{shown}: configs, EXPOSE and containerPorts agree")


def check_prometheus(report: Report, tools: Tools, scratch: Path) -> None:
    directory = CLUSTER / "prometheus"
    tool = tools.require("promtool", "promtool")
    if not tool:
        return
    # As installed: the configuration beside its rules and the bearer-token file it names.
    installed = scratch / "prometheus"
    installed.mkdir()
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(directory / name, installed / name)
    config = yaml.safe_load((directory / "prometheus.yml").read_text())
    for job in config.get("scrape_configs", []):
        credentials = job.get("authorization", {}).get("credentials_file")
        if credentials:
            (installed / credentials).write_text("stand-in token\n")
    checks = [("promtool check config", [tool, "check", "config", str(installed / "prometheus.yml")], installed),
              ("promtool check rules", [tool, "check", "rules", str(directory / "alerts.yml")], directory),
              ("promtool test rules", [tool, "test", "rules", "alerts_test.yml"], directory)]
    for name, command, cwd in checks:
        result = run(command, cwd=cwd)
        if result.returncode == 0:
            summary = [line.strip() for line in result.stdout.splitlines() if "SUCCESS" in line]
            report.passed(name, "; ".join(summary) or "ok")
        else:
            report.failed(name, output_of(result))


def check_alert_docs(report: Report, alerts: list[dict]) -> None:
    operations = ROOT / "docs" / "operations.md"
    if not operations.exists():
        report.failed("alert runbooks", "docs/operations.md is missing")
        return
    anchors = markdown_anchors(operations)
    problems = []
    for alert in alerts:
        runbook = alert.get("annotations", {}).get("runbook", "")
        if not runbook.startswith("docs/operations.md#"):
            problems.append(f"{alert['alert']}: runbook '{runbook}' is not docs/operations.md#…")
        elif runbook.split("#", 1)[1] not in anchors:
            problems.append(f"{alert['alert']}: docs/operations.md has no heading #{runbook.split('#', 1)[1]}")
        if alert.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
            problems.append(f"{alert['alert']}: severity must be critical, warning or info")
    if problems:
        report.failed("alert runbooks", "; ".join(problems))
    else:
        report.passed("alert runbooks", f"{len(alerts)} alerts, each with a severity and a docs/operations.md heading")


def check_dashboard(report: Report) -> dict | None:
    path = CLUSTER / "grafana" / "jindou-dashboard.json"
    name = "grafana dashboard"
    try:
        dashboard = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        report.failed(name, f"{path.relative_to(ROOT)}: {error}")
        return None
    problems = []
    ids = [p.get("id") for p in dashboard.get("panels", [])]
    if len(ids) != len(set(ids)) or None in ids:
        problems.append("panel ids are missing or repeated")
    for key in ("uid", "title", "panels", "schemaVersion"):
        if key not in dashboard:
            problems.append(f"no '{key}'")
    queries = 0
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            continue
        targets = [t for t in panel.get("targets", []) if t.get("expr", "").strip()]
        queries += len(targets)
        if not targets:
            problems.append(f"panel '{panel.get('title')}' has no query")
        if "gridPos" not in panel:
            problems.append(f"panel '{panel.get('title')}' has no gridPos")
    if problems:
        report.failed(name, "; ".join(problems))
        return None
    report.passed(name, f"well-formed: {len([p for p in dashboard['panels'] if p.get('type') != 'row'])} panels, {queries} queries")
    return dashboard


# ----------------------------------------------------------------------------- live cluster

# Which process serves a metric: a worker's own /metrics (`jindoud worker --http`) serves the
# jindou_node_* series, the coordinator every other one (per-worker series included, with the
# label `worker`).
WORKER_METRIC_PREFIX = "jindou_node_"


def served_by(metric: str) -> str:
    return "worker" if metric.startswith(WORKER_METRIC_PREFIX) else "coordinator"


def free_port() -> int:
    """A port free on 127.0.0.1 now (the daemons are given fixed ports, so their URLs are known)."""
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Daemon:
    """A jindoud process started by this checker, in its own session; ended (children
    included: `jindoud local` starts worker processes) by stop()."""

    def __init__(self, command: list[str], log: Path, token: str) -> None:
        self.token = token
        self.stderr = open(log, "w")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                        env=clean_environment(), start_new_session=True)
        self.children: set[int] = set()
        self.url: str | None = None

    def descendants(self) -> set[int]:
        """Processes started by ours, found through /proc."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                    parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
        found, frontier = set(), {self.process.pid}
        while frontier:
            frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
            found |= frontier
        return found

    def wait_ready_line(self, timeout: float) -> str:
        """The URL of the 'ready <url>' line jindoud prints on stdout."""
        deadline = time.monotonic() + timeout
        import selectors
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            self.children |= self.descendants()
            if self.process.poll() is not None:
                raise RuntimeError(f"{' '.join(self.process.args[1:3])} exited with status {self.process.returncode} before 'ready'")
            if selector.select(timeout=0.2):
                line = self.process.stdout.readline()
                if line.startswith("ready "):
                    self.children |= self.descendants()
                    return line.split()[1].rstrip("/")
        raise RuntimeError(f"no 'ready <url>' line within {timeout:.0f} s")

    def request(self, path: str, body: dict | None = None, token: bool = True, timeout: float = 30) -> tuple[int, str]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def wait_status(self, path: str, wanted: int, timeout: float) -> tuple[int, str]:
        """GETs path without a token until it answers `wanted` (or the time is up); a refused
        connection (HTTP not up yet) counts as not yet."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, body = self.request(path, token=False)
            except (urllib.error.URLError, OSError) as error:
                status, body = 0, str(error)
            if status == wanted or time.monotonic() > deadline:
                return status, body
            if self.process.poll() is not None:
                raise RuntimeError(f"{' '.join(self.process.args[1:3])} exited with status {self.process.returncode}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.children |= self.descendants()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.stderr.close()


def scraped_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
    return names


def start_coordinator(report: Report, jindoud: Path, scratch: Path, token_file: Path, token: str,
                      daemons: list[Daemon]) -> Daemon | None:
    """`jindoud local` (coordinator and two worker processes): ready line, /ready, /health and
    /metrics without a token, one completion."""
    name = "live jindoud local"
    try:
        port = free_port()
        cluster = Daemon([str(jindoud), "local", "--model", str(MODEL), "--workers", "2", "--listen", f"127.0.0.1:{port}",
                          "--token-file", str(token_file), "--state-dir", str(scratch / "state")],
                         scratch / "jindoud-local.log", token)
        daemons.append(cluster)
        cluster.url = cluster.wait_ready_line(timeout=180)
        status, body = cluster.wait_status("/ready", 200, timeout=60)
        if status != 200:
            raise RuntimeError(f"/ready answered {status}: {body[:200]}")
        health_status, health = cluster.request("/health", token=False)
        metrics_without_token, _ = cluster.request("/metrics", token=False)
        if health_status != 200 or json.loads(health).get("status") != "ok":
            raise RuntimeError(f"/health answered {health_status}: {health[:200]}")
        if metrics_without_token != 401:
            raise RuntimeError(f"/metrics without the bearer token answered {metrics_without_token}, expected 401 (prometheus.yml sends one)")
        completion_status, completion = cluster.request(
            "/v1/completions", {"model": MODEL.name, "prompt": "Hello", "max_tokens": 4, "temperature": 0})
        if completion_status != 200:
            raise RuntimeError(f"/v1/completions answered {completion_status}: {completion[:200]}")
        report.passed(name, f"{cluster.url}: 'ready' printed, /ready 200 ({json.loads(body).get('served_experts')} experts served), "
                            "/health 200 without a token, /metrics 401 without one, a completion served")
        return cluster
    except (RuntimeError, OSError, ValueError, urllib.error.URLError) as error:
        report.failed(name, str(error))
        return None


def start_worker(report: Report, jindoud: Path, scratch: Path, token_file: Path, token: str,
                 daemons: list[Daemon]) -> Daemon | None:
    """`jindoud worker --http` with the same secret, as worker.yaml runs it (on the bundled
    model, not joined): /health and /ready 200 without a token, /metrics 401 without one."""
    name = "live jindoud worker --http"
    try:
        http = free_port()
        worker = Daemon([str(jindoud), "worker", "--model", str(MODEL), "--listen", f"127.0.0.1:{free_port()}",
                         "--http", f"127.0.0.1:{http}", "--token-file", str(token_file), "--name", "check-worker"],
                        scratch / "jindoud-worker.log", token)
        daemons.append(worker)
        node = worker.wait_ready_line(timeout=120)
        worker.url = f"http://127.0.0.1:{http}"
        health_status, health = worker.wait_status("/health", 200, timeout=30)
        if health_status != 200 or json.loads(health) != {"status": "ok", "name": "check-worker"}:
            raise RuntimeError(f"/health without a token answered {health_status}: {health[:200]}")
        ready_status, ready = worker.wait_status("/ready", 200, timeout=30)
        if ready_status != 200:
            raise RuntimeError(f"/ready without a token answered {ready_status}: {ready[:200]}")
        metrics_without_token, _ = worker.request("/metrics", token=False)
        if metrics_without_token != 401:
            raise RuntimeError(f"/metrics without the bearer token answered {metrics_without_token}, expected 401 (prometheus.yml sends one)")
        report.passed(name, f"node port {node}, {worker.url}: /health 200 and /ready 200 ({json.loads(ready).get('experts')} experts "
                            "mapped) without a token, /metrics 401 without one")
        return worker
    except (RuntimeError, OSError, ValueError, urllib.error.URLError) as error:
        report.failed(name, str(error))
        return None


def check_metric_names(report: Report, process: str, daemon: Daemon | None, wanted: dict[str, list[str]], patience: float) -> None:
    """Every metric in `wanted` (name → where it is used) is in the daemon's scrape with the token."""
    name = f"metric names ({process})"
    if daemon is None:
        report.failed(name, f"no live {process} scrape to check them against")
        return
    # The coordinator's load gauges are refreshed once a second from the window: scrape until all are there.
    deadline = time.monotonic() + patience
    while True:
        status, text = daemon.request("/metrics")
        present = scraped_names(text) if status == 200 else set()
        missing = set(wanted) - present
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if status != 200:
        report.failed(name, f"/metrics with the bearer token answered {status}")
    elif missing:
        report.failed(name, "; ".join(f"{m} (used by {', '.join(sorted(set(wanted[m])))})" for m in sorted(missing)))
    else:
        report.passed(name, f"all {len(wanted)} metrics the alerts and the dashboard take from the {process} are in its "
                            f"scrape ({len(present)} series names)")


def check_live(report: Report, jindoud: Path, scratch: Path, referenced: dict[str, list[str]], recorded: set[str],
               daemons: list[Daemon]) -> None:
    token = "5a" * 32
    token_file = scratch / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    coordinator = start_coordinator(report, jindoud, scratch, token_file, token, daemons)
    worker = start_worker(report, jindoud, scratch, token_file, token, daemons)
    wanted = {metric: uses for metric, uses in referenced.items() if metric not in recorded | PROMETHEUS_SERIES}
    check_metric_names(report, "coordinator", coordinator, {m: u for m, u in wanted.items() if served_by(m) == "coordinator"}, 30)
    check_metric_names(report, "worker", worker, {m: u for m, u in wanted.items() if served_by(m) == "worker"}, 5)


# ----------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jindoud", required=True, type=Path, help="the built jindoud binary, e.g. .build/debug/jindoud")
    parser.add_argument("--require-all", action="store_true", help="a missing checker tool is a failure, not a skip")
    arguments = parser.parse_args()
    jindoud = arguments.jindoud.resolve()
    report = Report()
    tools = Tools(report, arguments.require_all)
    if not (jindoud.exists() and os.access(jindoud, os.X_OK)):
        report.failed("jindoud", f"{arguments.jindoud} is not an executable")
        return 1
    daemons: list[Daemon] = []

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="jindou-check-deploy-") as temporary:
        scratch = Path(temporary)
        try:
            manifests = sorted((CLUSTER / "kubernetes").glob("*.yaml"))
            documents = [d for f in manifests for d in yaml_documents(f)]
            check_systemd(report, tools, jindoud, scratch)
            check_config_files(report, jindoud)
            check_pod_configs(report, jindoud, documents, "kubernetes", scratch)
            check_hadolint(report, tools)
            check_ports(report, documents)
            check_kubernetes(report, tools, manifests, "cluster/kubernetes")
            rendered_dir = scratch / "helm"
            rendered_dir.mkdir()
            try:
                rendered = render_helm(CLUSTER / "helm" / "jindou", release="jindou", namespace="jindou")
                for template, body in rendered.items():
                    (rendered_dir / template).write_text(body)
                report.passed("helm render (strict subset)", f"{len(rendered)} templates rendered with values.yaml")
                rendered_files = sorted(rendered_dir.glob("*.yaml"))
                check_kubernetes(report, tools, rendered_files, "cluster/helm/jindou (rendered)")
                check_pod_configs(report, jindoud, [d for f in rendered_files for d in yaml_documents(f)], "helm", scratch)
            except (RenderError, yaml.YAMLError, KeyError) as error:
                report.failed("helm render (strict subset)", str(error))
                rendered_dir = None
            check_yamllint(report, tools, rendered_dir)
            check_prometheus(report, tools, scratch)
            expressions, recorded, alerts = rule_expressions(CLUSTER / "prometheus" / "alerts.yml")
            check_alert_docs(report, alerts)
            dashboard = check_dashboard(report)
            if dashboard:
                expressions += [(f"dashboard {where}", expr) for where, expr in dashboard_expressions(dashboard)]
            referenced: dict[str, list[str]] = {}
            for where, expression in expressions:
                for metric in metric_names(expression):
                    referenced.setdefault(metric, []).append(where)
            check_live(report, jindoud, scratch, referenced, recorded, daemons)
        finally:
            for daemon in daemons:
                daemon.stop()
    verdict = "FAIL" if report.failures else "PASS"
    print(f"{verdict} check_deploy: {report.failures} failed checks, {time.monotonic() - started:.1f} s", flush=True)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
