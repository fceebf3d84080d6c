#!/usr/bin/env python3
"""Soak-and-chaos driver for a Jindou cluster on loopback.

Starts a coordinator (with --state-dir and --token-file) and three joining workers, scales
to two replicas, then for --minutes runs N client threads (the official `openai` client,
retries off) against the OpenAI API while a chaos loop kills, stops, drains and restarts
workers, rebalances, scales 2 -> 1 -> 2, and restarts the coordinator exactly once around
the middle. A sampler records RSS and open fds of every jindoud process and the state-dir
size every few seconds. At the end everything is stopped gracefully and OUT/ holds:

    events.jsonl    every chaos event (and its outcome) with timestamps
    requests.jsonl  every request: start, latency, ok, status/error type, restart overlap
    samples.csv     RSS / fds / threads per process, state-dir bytes, /dev/shm entries
    results.json    the summary (see docs/reliability.md)
    rss.png         RSS over time per process, chaos events marked (needs matplotlib)
    *.stderr        each process's log (restarts append, after a '=== start' marker)

    /work/venv/bin/python tools/soak.py --jindoud /tmp/soak-bin/jindoud \\
        --jindouctl /tmp/soak-bin/jindouctl --model Tests/Fixtures/qwen3-moe-tiny \\
        --minutes 30 --clients 8 --out /tmp/soak

Exit status: 0 when no request failed outside the coordinator-restart window and no
process crashed or failed to come back, else 1. The results are written either way.
"""
import argparse
import collections
import ctypes
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request

from doc_sections import replace_section

import openai
from openai import OpenAI

PR_SET_PDEATHSIG = 1
WORKERS = ["w0", "w1", "w2"]


def now():
    return time.time()


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    # Children die with the soak driver even if it is SIGKILLed (all spawns happen on the
    # main thread, so "parent thread exits" only happens when the driver exits).
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:
        pass
    os.setsid()  # Ctrl-C in the terminal reaches only the driver, which stops them in order


class Proc:
    """One jindoud process (role + name), restartable with the same flags."""

    def __init__(self, role, name, cmd, out_dir):
        self.role, self.name, self.cmd = role, name, cmd
        self.stderr_path = os.path.join(out_dir, f"{name}.stderr")
        self.stdout_path = os.path.join(out_dir, f"{name}.stdout")
        self.popen = None
        self.url = None
        self.ready = threading.Event()
        self.incarnation = 0
        self.expected_exit = False
        self.started_at = None
        self.lock = threading.Lock()

    def start(self):
        with self.lock:
            self.incarnation += 1
            self.ready.clear()
            self.url = None
            self.expected_exit = False
            err = open(self.stderr_path, "a")
            err.write(f"=== start {self.incarnation} at {iso(now())}: {' '.join(self.cmd)}\n")
            err.flush()
            self.popen = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                          preexec_fn=_die_with_parent, text=True, bufsize=1)
            err.close()
            self.started_at = now()
            threading.Thread(target=self._read_stdout, args=(self.popen,), daemon=True).start()
            return self.popen.pid

    def _read_stdout(self, popen):
        with open(self.stdout_path, "a") as out:
            for line in popen.stdout:
                out.write(line)
                out.flush()
                if line.startswith("ready ") and popen is self.popen:
                    self.url = line.split()[1]
                    self.ready.set()

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def wait_ready(self, timeout):
        deadline = now() + timeout
        while now() < deadline:
            if self.ready.wait(0.1):
                return True
            if not self.alive():
                return False
        return False

    def signal(self, sig):
        self.expected_exit = True
        if self.alive():
            self.popen.send_signal(sig)

    def wait_exit(self, timeout):
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=20.0):
        """SIGTERM, wait; SIGKILL if it does not exit. Returns (returncode, graceful)."""
        if self.popen is None:
            return None, True
        if not self.alive():
            return self.popen.returncode, True
        self.signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        if rc is not None:
            return rc, True
        self.popen.kill()
        return self.popen.wait(), False


class Soak:
    def __init__(self, args):
        self.args = args
        self.out = os.path.abspath(args.out)
        os.makedirs(self.out, exist_ok=True)
        for f in os.listdir(self.out):
            p = os.path.join(self.out, f)
            if os.path.isfile(p):
                os.unlink(p)
        self.state_dir = os.path.join(self.out, "state")
        if os.path.isdir(self.state_dir):
            for f in os.listdir(self.state_dir):
                os.unlink(os.path.join(self.state_dir, f))
        self.token_file = os.path.join(self.out, "token")
        with open(self.token_file, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        os.chmod(self.token_file, 0o600)
        self.token = open(self.token_file).read().strip()
        self.seed = args.seed if args.seed is not None else random.randrange(1 << 32)
        self.rng = random.Random(self.seed)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.model_name = os.path.basename(os.path.normpath(args.model))
        self.stop_clients = threading.Event()
        self.stop_sampler = threading.Event()
        self.events_lock = threading.Lock()
        self.events = []
        self.requests_lock = threading.Lock()
        self.requests = []
        self.samples = []
        self.restart_windows = []  # [start, end] of the coordinator restart (SIGTERM .. /ready 200)
        self.anomalies = []
        self.t0 = None
        self.events_file = open(os.path.join(self.out, "events.jsonl"), "w")
        self.procs = collections.OrderedDict()
        coord_cmd = [args.jindoud, "coordinator", "--model", args.model, "--listen", f"127.0.0.1:{self.port}",
                     "--state-dir", self.state_dir, "--token-file", self.token_file,
                     "--heartbeat", "0.2", "--unreachable-after", "1", "--gone-after", "30"]
        self.procs["coordinator"] = Proc("coordinator", "coordinator", coord_cmd, self.out)
        for name in WORKERS:
            wcmd = [args.jindoud, "worker", "--model", args.model, "--listen", f"127.0.0.1:{free_port()}",
                    "--join", self.url, "--token-file", self.token_file, "--name", name]
            self.procs[name] = Proc("worker", name, wcmd, self.out)

    # ---- logging -------------------------------------------------------------------------

    def event(self, kind, **fields):
        t = now()
        rec = {"t": round(t - self.t0, 3) if self.t0 else 0.0, "time": iso(t), "kind": kind, **fields}
        with self.events_lock:
            self.events.append(rec)
            self.events_file.write(json.dumps(rec) + "\n")
            self.events_file.flush()
        print(f"[{rec['t']:8.1f}s] {kind} " + " ".join(f"{k}={v}" for k, v in fields.items()), flush=True)
        return rec

    def anomaly(self, what, **fields):
        rec = {"time": iso(now()), "t": round(now() - self.t0, 3) if self.t0 else 0.0, "what": what, **fields}
        self.anomalies.append(rec)
        self.event("anomaly", what=what, **fields)

    # ---- admin ---------------------------------------------------------------------------

    def http_json(self, path, timeout=5.0, auth=True):
        req = urllib.request.Request(self.url + path)
        if auth:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read() or b"null")
            except Exception:
                return e.code, None
        except Exception as e:
            return None, str(e)

    def ctl(self, *argv, timeout=60):
        cmd = [self.args.jindouctl, *argv, "--coordinator", self.url, "--token-file", self.token_file, "--json"]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            out = p.stdout.strip()
            try:
                out = json.loads(out)
            except Exception:
                pass
            return p.returncode, out, p.stderr.strip()
        except subprocess.TimeoutExpired:
            return None, None, "timeout"

    def status(self):
        code, body = self.http_json("/v1/admin/status")
        return body if code == 200 and isinstance(body, dict) else None

    def settled(self, replicas, expect_workers=WORKERS, states=("ready",)):
        st = self.status()
        if st is None:
            return False, None
        ready_code, _ = self.http_json("/ready", auth=False)
        workers = {w["name"]: w for w in st.get("workers", [])}
        ok = (ready_code == 200 and st.get("settled", True) and st.get("served_experts") == st.get("total_experts")
              and st.get("staged_version") in (None, st.get("placement_version")) and st.get("replicas") == replicas
              and all(n in workers and workers[n]["state"] in states for n in expect_workers))
        return ok, st

    def wait_settled(self, replicas, timeout, why, expect_workers=WORKERS):
        t = now()
        st = None
        while now() - t < timeout:
            ok, st = self.settled(replicas, expect_workers)
            if ok:
                return round(now() - t, 2)
            time.sleep(0.25)
        brief = None
        if st:
            brief = {"placement_version": st.get("placement_version"), "staged_version": st.get("staged_version"),
                     "replicas": st.get("replicas"), "served": st.get("served_experts"),
                     "settled": st.get("settled"),
                     "workers": {w["name"]: (w["state"], w["experts"]) for w in st.get("workers", [])}}
        self.anomaly("not_settled", after=why, timeout_s=timeout, status=brief)
        return None

    def wait_worker_state(self, name, states, timeout):
        t = now()
        while now() - t < timeout:
            st = self.status()
            if st:
                for w in st.get("workers", []):
                    if w["name"] == name and w["state"] in states:
                        return round(now() - t, 2), w
            time.sleep(0.2)
        return None, None

    # ---- processes -----------------------------------------------------------------------

    def start_proc(self, name, timeout=120):
        p = self.procs[name]
        pid = p.start()
        ok = p.wait_ready(timeout)
        if not ok:
            self.anomaly("start_failed", process=name, pid=pid, alive=p.alive(),
                         returncode=None if p.alive() else p.popen.returncode)
        return ok

    def check_unexpected_exits(self):
        for name, p in self.procs.items():
            if p.popen is not None and not p.alive() and not p.expected_exit:
                rc = p.popen.returncode
                p.expected_exit = True  # report once
                self.anomaly("unexpected_exit", process=name, pid=p.pid, returncode=rc,
                             stderr_tail=tail(p.stderr_path, 15))
                if not self.stop_clients.is_set():
                    self.event("restart_after_crash", process=name)
                    self.start_proc(name)

    # ---- clients -------------------------------------------------------------------------

    PROMPTS = ["Name a prime number.", "Say hello.", "What is two plus two?", "Count to five.",
               "Tell me a colour.", "Write one word.", "hi there", "Describe the sea in three words."]
    TEXT_PROMPTS = ["Once upon a time", "The capital of France is", "1, 2, 3,", "In the beginning"]

    def client_loop(self, idx):
        rng = random.Random(self.seed * 1000 + idx)
        client = OpenAI(base_url=self.url + "/v1", api_key=self.token, max_retries=0,
                        timeout=self.args.request_timeout)
        while not self.stop_clients.is_set():
            kind = rng.choices(["chat", "chat_stream", "completion", "completion_stream"], [4, 4, 1, 1])[0]
            stream = kind.endswith("_stream")
            max_tokens = rng.randint(8, 32)
            temperature = 0.0 if rng.random() < 0.5 else round(rng.uniform(0.3, 1.2), 2)
            rec = {"client": idx, "kind": kind, "stream": stream, "max_tokens": max_tokens,
                   "temperature": temperature}
            start = now()
            rec["start"] = start
            ttft = None
            try:
                if kind.startswith("chat"):
                    msgs = [{"role": "user", "content": rng.choice(self.PROMPTS)}]
                    extra = {"chat_template_kwargs": {"enable_thinking": rng.random() < 0.5}}
                    kw = dict(model=self.model_name, messages=msgs, max_tokens=max_tokens, temperature=temperature,
                              extra_body=extra)
                    if temperature > 0:
                        kw["seed"] = rng.randrange(1 << 30)
                    if stream:
                        finish, chunks = None, 0
                        for chunk in client.chat.completions.create(stream=True, **kw):
                            if ttft is None:
                                ttft = now() - start
                            chunks += 1
                            for ch in chunk.choices:
                                finish = ch.finish_reason or finish
                        if finish is None:
                            raise IncompleteResponse(f"stream ended without finish_reason after {chunks} chunks")
                        rec["finish"] = finish
                    else:
                        r = client.chat.completions.create(**kw)
                        if not r.choices or r.choices[0].finish_reason is None or not r.usage:
                            raise IncompleteResponse("response without choices/finish_reason/usage")
                        rec["finish"] = r.choices[0].finish_reason
                        rec["completion_tokens"] = r.usage.completion_tokens
                else:
                    kw = dict(model=self.model_name, prompt=rng.choice(self.TEXT_PROMPTS), max_tokens=max_tokens,
                              temperature=temperature)
                    if stream:
                        finish, chunks = None, 0
                        for chunk in client.completions.create(stream=True, **kw):
                            if ttft is None:
                                ttft = now() - start
                            chunks += 1
                            for ch in chunk.choices:
                                finish = ch.finish_reason or finish
                        if finish is None:
                            raise IncompleteResponse(f"stream ended without finish_reason after {chunks} chunks")
                        rec["finish"] = finish
                    else:
                        r = client.completions.create(**kw)
                        if not r.choices or r.choices[0].finish_reason is None:
                            raise IncompleteResponse("response without choices/finish_reason")
                        rec["finish"] = r.choices[0].finish_reason
                rec["ok"] = True
            except Exception as e:  # every failure is counted, nothing retried
                rec["ok"] = False
                rec["error_type"] = type(e).__name__
                rec["status"] = getattr(e, "status_code", None)
                rec["error"] = str(e)[:300]
            end = now()
            rec["end"] = end
            rec["latency"] = round(end - start, 4)
            if ttft is not None:
                rec["ttft"] = round(ttft, 4)
            with self.requests_lock:
                self.requests.append(rec)
            if not rec["ok"]:
                time.sleep(0.2)  # do not spin on a refused connection while the coordinator is down

    # ---- sampler -------------------------------------------------------------------------

    def sampler_loop(self):
        while not self.stop_sampler.is_set():
            self.sample_once()
            self.stop_sampler.wait(self.args.sample_every)

    def sample_once(self):
        t = now()
        rows = []
        for name, p in list(self.procs.items()):
            if p.popen is None or not p.alive():
                continue
            pid = p.pid
            rss = threads = None
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            rss = int(line.split()[1])
                        elif line.startswith("Threads:"):
                            threads = int(line.split()[1])
                fds = len(os.listdir(f"/proc/{pid}/fd"))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            rows.append({"t": t - self.t0, "wall": iso(t), "process": name, "role": p.role, "incarnation": p.incarnation,
                         "pid": pid, "rss_kb": rss, "fds": fds, "threads": threads, "bytes": ""})
        rows.append({"t": t - self.t0, "wall": iso(t), "process": "state-dir", "role": "state-dir", "incarnation": "",
                     "pid": "", "rss_kb": "", "fds": "", "threads": "", "bytes": dir_size(self.state_dir)})
        try:
            shm = len([f for f in os.listdir("/dev/shm") if f.startswith("jindou")])
        except FileNotFoundError:
            shm = 0
        rows.append({"t": t - self.t0, "wall": iso(t), "process": "dev-shm-jindou", "role": "dev-shm",
                     "incarnation": "", "pid": "", "rss_kb": "", "fds": shm, "threads": "", "bytes": ""})
        rows.append({"t": t - self.t0, "wall": iso(t), "process": "jindoud-procs", "role": "procs", "incarnation": "",
                     "pid": "", "rss_kb": "", "fds": count_procs(self.args.jindoud), "threads": "", "bytes": ""})
        self.samples.extend(rows)

    # ---- chaos ---------------------------------------------------------------------------

    def chaos_kill(self, sig, label):
        name = self.rng.choice(WORKERS)
        p = self.procs[name]
        pause = round(self.rng.uniform(2, 6), 1)
        pid = p.pid
        p.signal(sig)
        rc = p.wait_exit(30)
        if rc is None:
            self.anomaly("no_exit_after_signal", process=name, signal=label)
            p.popen.kill()
            rc = p.popen.wait()
        if sig == signal.SIGTERM and rc not in (0,):
            self.anomaly("nonzero_exit_on_sigterm", process=name, returncode=rc)
        time.sleep(pause)
        ok = self.start_proc(name)
        return {"worker": name, "old_pid": pid, "returncode": rc, "down_s": pause, "restarted": ok,
                "new_pid": p.pid}

    def chaos_drain(self):
        name = self.rng.choice(WORKERS)
        p = self.procs[name]
        rc, out, err = self.ctl("drain", name)
        info = {"worker": name, "drain_rc": rc, "drain_err": err[:200]}
        if rc != 0:
            self.anomaly("drain_refused", worker=name, rc=rc, stderr=err[:300])
            return info
        waited, w = self.wait_worker_state(name, ("drained",), 60)
        info["drained_after_s"] = waited
        if waited is None:
            self.anomaly("never_drained", worker=name)
        rc = p.stop()[0]
        info["stop_rc"] = rc
        time.sleep(self.rng.uniform(1, 4))
        info["restarted"] = self.start_proc(name)
        waited, w = self.wait_worker_state(name, ("ready",), 60)
        info["rejoined_after_s"] = waited
        if waited is None:
            self.anomaly("never_rejoined", worker=name)
        return info

    def chaos_rebalance(self):
        rc, out, err = self.ctl("rebalance")
        info = {"rc": rc}
        if isinstance(out, dict):
            info.update(from_version=out.get("from_version"), to_version=out.get("to_version"),
                        moved=sum(d.get("added_count", 0) for d in out.get("diff", [])))
        if rc != 0:
            self.anomaly("rebalance_failed", rc=rc, stderr=err[:300])
        return info

    def chaos_scale(self):
        rc1, out1, err1 = self.ctl("scale", "--replicas", "1")
        if rc1 != 0:
            self.anomaly("scale_failed", replicas=1, rc=rc1, stderr=err1[:300])
        s1 = self.wait_settled(1, self.args.settle_timeout, "scale 1")
        time.sleep(self.rng.uniform(3, 10))
        rc2, out2, err2 = self.ctl("scale", "--replicas", "2")
        if rc2 != 0:
            self.anomaly("scale_failed", replicas=2, rc=rc2, stderr=err2[:300])
        return {"rc_to_1": rc1, "settled_at_1_s": s1, "rc_to_2": rc2}

    def chaos_coordinator_restart(self):
        p = self.procs["coordinator"]
        t_start = now()
        pid = p.pid
        p.signal(signal.SIGTERM)
        rc = p.wait_exit(60)
        graceful = rc is not None
        if rc is None:
            self.anomaly("coordinator_no_exit_on_sigterm", pid=pid)
            p.popen.kill()
            rc = p.popen.wait()
        t_down = now()
        ok = self.start_proc("coordinator")
        t_http = now()
        ready = None
        while now() - t_http < 120:
            code, _ = self.http_json("/ready", auth=False)
            if code == 200:
                ready = now()
                break
            time.sleep(0.1)
        if ready is None:
            self.anomaly("coordinator_not_ready_after_restart")
            ready = now()
        self.restart_windows.append([t_start, ready])
        return {"old_pid": pid, "returncode": rc, "graceful": graceful, "stop_s": round(t_down - t_start, 2),
                "http_up_s": round(t_http - t_start, 2), "ready_s": round(ready - t_start, 2), "restarted": ok,
                "new_pid": p.pid}

    def chaos_loop(self, end):
        kinds = ["worker_sigkill", "worker_sigterm", "worker_drain", "rebalance", "scale_1_2"]
        weights = [3, 3, 2, 1, 1]
        mid = self.t0 + (end - self.t0) / 2
        coordinator_done = False
        while True:
            self.check_unexpected_exits()
            settle = self.wait_settled(2, self.args.settle_timeout, "previous event")
            gap = self.rng.uniform(self.args.chaos_min, self.args.chaos_max)
            next_t = now() + gap
            while now() < min(next_t, end):
                time.sleep(0.5)
                self.check_unexpected_exits()
            if now() >= end - self.args.chaos_min / 2:
                break
            if not coordinator_done and now() >= mid:
                kind = "coordinator_restart"
                coordinator_done = True
            else:
                kind = self.rng.choices(kinds, weights)[0]
            self.event(kind + ":begin", settled_before_s=settle)
            t = now()
            try:
                if kind == "worker_sigkill":
                    info = self.chaos_kill(signal.SIGKILL, "SIGKILL")
                elif kind == "worker_sigterm":
                    info = self.chaos_kill(signal.SIGTERM, "SIGTERM")
                elif kind == "worker_drain":
                    info = self.chaos_drain()
                elif kind == "rebalance":
                    info = self.chaos_rebalance()
                elif kind == "scale_1_2":
                    info = self.chaos_scale()
                else:
                    info = self.chaos_coordinator_restart()
            except Exception as e:
                self.anomaly("chaos_exception", event=kind, error=repr(e), tb=traceback.format_exc()[-800:])
                info = {}
            self.event(kind, duration_s=round(now() - t, 2), **info)
        if not coordinator_done:
            self.anomaly("coordinator_restart_not_done", note="run too short for the chaos gaps")

    # ---- run -----------------------------------------------------------------------------

    def run(self):
        a = self.args
        self.t0 = now()
        load_start = os.getloadavg()
        self.uptime_start = uptime()
        print(f"soak: seed {self.seed}  out {self.out}  coordinator {self.url}", flush=True)
        self.event("start", seed=self.seed, minutes=a.minutes, clients=a.clients, loadavg=load_start,
                   jindoud=a.jindoud, model=a.model)
        exit_code = 1
        clients = []
        sampler = threading.Thread(target=self.sampler_loop, daemon=True)
        try:
            if not self.start_proc("coordinator"):
                raise RuntimeError("coordinator did not start")
            for name in WORKERS:
                if not self.start_proc(name):
                    raise RuntimeError(f"{name} did not start")
            rc, out, err = self.ctl("scale", "--replicas", "2")
            if rc != 0:
                raise RuntimeError(f"scale --replicas 2 failed: {err}")
            if self.wait_settled(2, 120, "initial scale") is None:
                raise RuntimeError("cluster did not become ready with 2 replicas")
            self.event("cluster_ready", url=self.url)
            sampler.start()
            state_start = dir_size(self.state_dir)
            run_start = now()
            end = run_start + a.minutes * 60
            for i in range(a.clients):
                th = threading.Thread(target=self.client_loop, args=(i,), daemon=True)
                th.start()
                clients.append(th)
            self.chaos_loop(end)
            while now() < end:
                time.sleep(0.5)
                self.check_unexpected_exits()
            self.event("load_stop")
            self.stop_clients.set()
            for th in clients:
                th.join(a.request_timeout + 5)
            run_end = now()
            final_settle = self.wait_settled(2, a.settle_timeout, "end of run")
            verify = self.ctl("verify")
            self.event("verify", rc=verify[0], ok=verify[1].get("ok") if isinstance(verify[1], dict) else None)
            if verify[0] != 0:
                self.anomaly("verify_failed", out=verify[1], stderr=verify[2][:300])
            self.sample_once()
            state_end = dir_size(self.state_dir)
        except KeyboardInterrupt:
            self.anomaly("interrupted")
            run_start = run_start if "run_start" in locals() else self.t0
            run_end, state_start, state_end, final_settle = now(), locals().get("state_start"), dir_size(self.state_dir), None
        except Exception as e:
            self.anomaly("driver_error", error=repr(e), tb=traceback.format_exc()[-1500:])
            run_start = locals().get("run_start", self.t0)
            run_end, state_start, state_end, final_settle = now(), locals().get("state_start"), dir_size(self.state_dir), None
        finally:
            self.stop_clients.set()
            stops = self.shutdown()
            self.stop_sampler.set()
            load_end = os.getloadavg()
        leftovers = count_procs(a.jindoud)
        if leftovers:
            self.anomaly("leftover_processes", count=leftovers)
        results = self.summarise(run_start, run_end, load_start, load_end, state_start, state_end, stops,
                                 final_settle, leftovers)
        self.write_outputs(results)
        exit_code = 0 if results["goal_met"] else 1
        print(json.dumps(results["summary"], indent=1), flush=True)
        print(f"soak: {'PASS' if exit_code == 0 else 'FAIL'}; results in {self.out}/results.json", flush=True)
        return exit_code

    def shutdown(self):
        stops = {}
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # finish stopping the children
        for name in WORKERS + ["coordinator"]:
            p = self.procs[name]
            if p.popen is None:
                continue
            was_alive = p.alive()
            rc, graceful = p.stop(20)
            stops[name] = {"returncode": rc, "graceful": graceful, "was_alive": was_alive}
            if was_alive and (not graceful or rc != 0):
                self.anomaly("unclean_stop", process=name, returncode=rc, graceful=graceful)
        self.event("stopped", **{k: v["returncode"] for k, v in stops.items()})
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return stops

    # ---- results -------------------------------------------------------------------------

    def summarise(self, run_start, run_end, load_start, load_end, state_start, state_end, stops, final_settle,
                  leftovers):
        reqs = sorted(self.requests, key=lambda r: r["start"])
        for r in reqs:
            r["in_restart_window"] = any(r["start"] <= w1 and r["end"] >= w0 for w0, w1 in self.restart_windows)
            r["in_flight_at_restart_sigterm"] = any(r["start"] <= w0 <= r["end"] for w0, _ in self.restart_windows)
        ok = [r for r in reqs if r["ok"]]
        failed = [r for r in reqs if not r["ok"]]
        in_win = [r for r in failed if r["in_restart_window"]]
        outside = [r for r in failed if not r["in_restart_window"]]

        def by_type(rs):
            groups = collections.OrderedDict()
            for r in rs:
                key = f"{r.get('error_type')}:{r.get('status')}"
                g = groups.setdefault(key, {"count": 0, "examples": []})
                g["count"] += 1
                if len(g["examples"]) < 3:
                    g["examples"].append({"time": iso(r["start"]), "kind": r["kind"],
                                          "latency": r["latency"], "error": r.get("error")})
            return groups

        def pct(values):
            if not values:
                return None
            v = sorted(values)

            def q(p):
                return round(v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))], 4)
            return {"n": len(v), "p50": q(50), "p90": q(90), "p99": q(99), "max": round(v[-1], 4)}

        latency = {
            "streamed": pct([r["latency"] for r in ok if r["stream"]]),
            "non_streamed": pct([r["latency"] for r in ok if not r["stream"]]),
            "streamed_ttft": pct([r["ttft"] for r in ok if r["stream"] and "ttft" in r]),
        }
        for k in ["chat", "chat_stream", "completion", "completion_stream"]:
            latency[k] = pct([r["latency"] for r in ok if r["kind"] == k])
        ev_counts = collections.Counter(e["kind"] for e in self.events
                                        if not e["kind"].endswith(":begin") and e["kind"] in
                                        ("worker_sigkill", "worker_sigterm", "worker_drain", "rebalance", "scale_1_2",
                                         "coordinator_restart"))
        procs = collections.OrderedDict()
        incarnations = collections.OrderedDict()
        for s in self.samples:
            if s["role"] in ("coordinator", "worker"):
                d = procs.setdefault(s["process"], {"role": s["role"], "rss_kb": [], "fds": [], "threads": []})
                d["rss_kb"].append(s["rss_kb"])
                d["fds"].append(s["fds"])
                d["threads"].append(s["threads"])
                inc = incarnations.setdefault(f"{s['process']}#{s['incarnation']}", [])
                inc.append(s)
        proc_summary = {}
        for name, d in procs.items():
            proc_summary[name] = {"role": d["role"], "rss_mb_min": round(min(d["rss_kb"]) / 1024, 1),
                                  "rss_mb_max": round(max(d["rss_kb"]) / 1024, 1),
                                  "fds_min": min(d["fds"]), "fds_max": max(d["fds"]),
                                  "threads_min": min(d["threads"]), "threads_max": max(d["threads"]),
                                  "incarnations": self.procs[name].incarnation}
        role_summary = {}
        for role in ("coordinator", "worker"):
            rs = [d for d in procs.values() if d["role"] == role]
            if rs:
                role_summary[role] = {"rss_mb_min": round(min(min(d["rss_kb"]) for d in rs) / 1024, 1),
                                      "rss_mb_max": round(max(max(d["rss_kb"]) for d in rs) / 1024, 1),
                                      "fds_min": min(min(d["fds"]) for d in rs),
                                      "fds_max": max(max(d["fds"]) for d in rs)}
        inc_summary = {}
        for key, ss in incarnations.items():
            if len(ss) < 2:
                continue
            life = ss[-1]["t"] - ss[0]["t"]
            # growth after the first minute of a process's life (warm-up excluded when possible)
            warm = [s for s in ss if s["t"] - ss[0]["t"] >= 60] or ss
            inc_summary[key] = {"samples": len(ss), "life_s": round(life, 1),
                                "rss_mb_first": round(ss[0]["rss_kb"] / 1024, 1),
                                "rss_mb_after_1min": round(warm[0]["rss_kb"] / 1024, 1),
                                "rss_mb_last": round(ss[-1]["rss_kb"] / 1024, 1),
                                "rss_mb_max": round(max(s["rss_kb"] for s in ss) / 1024, 1),
                                "fds_first": ss[0]["fds"], "fds_last": ss[-1]["fds"],
                                "fds_max": max(s["fds"] for s in ss)}
        shm = [s["fds"] for s in self.samples if s["role"] == "dev-shm"]
        nprocs = [s["fds"] for s in self.samples if s["role"] == "procs"]
        settle_times = [e.get("settled_before_s") for e in self.events if e["kind"].endswith(":begin")
                        and e.get("settled_before_s") is not None]
        goal_met = not outside and not self.anomalies
        win_fail_types = collections.Counter(f"{r.get('error_type')}:{r.get('status')}" for r in in_win)
        summary = {
            "duration_s": round(run_end - run_start, 1),
            "requests": len(reqs), "succeeded": len(ok), "failed": len(failed),
            "failed_in_coordinator_restart_window": len(in_win),
            "failed_outside_restart_window": len(outside),
            "events": dict(ev_counts), "anomalies": len(self.anomalies), "goal_met": goal_met,
        }
        return {
            "summary": summary,
            "goal_met": goal_met,
            "seed": self.seed,
            "command": " ".join(sys.argv),
            "started": iso(run_start), "ended": iso(run_end),
            "duration_s": round(run_end - run_start, 1),
            "machine": {"cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in load_start],
                        "loadavg_end": [round(x, 2) for x in load_end], "uptime_start": self.uptime_start, "uptime_end": uptime(),
                        "kernel": os.uname().release},
            "clients": self.args.clients,
            "requests": {"sent": len(reqs), "succeeded": len(ok), "failed": len(failed),
                         "by_kind": dict(collections.Counter(r["kind"] for r in reqs)),
                         "completed_per_s": round(len(ok) / max(1e-9, run_end - run_start), 2)},
            "failures": {
                "in_coordinator_restart_window": {
                    "count": len(in_win),
                    "in_flight_at_sigterm": sum(1 for r in in_win if r["in_flight_at_restart_sigterm"]),
                    "started_while_down": sum(1 for r in in_win if not r["in_flight_at_restart_sigterm"]),
                    "by_type": by_type(in_win)},
                "outside_restart_window": {"count": len(outside), "by_type": by_type(outside)},
            },
            "requests_overlapping_restart_window": {
                "total": sum(1 for r in reqs if r["in_restart_window"]),
                "ok": sum(1 for r in reqs if r["in_restart_window"] and r["ok"]),
                "failed_by_type": dict(win_fail_types)},
            "coordinator_restart_windows": [{"start": iso(a), "end": iso(b), "seconds": round(b - a, 2)}
                                            for a, b in self.restart_windows],
            "latency_s_ok": latency,
            "events": dict(ev_counts),
            "settle_s_before_events": pct(settle_times),
            "anomalies": self.anomalies,
            "processes": proc_summary,
            "roles": role_summary,
            "incarnations": inc_summary,
            "dev_shm_jindou_entries": {"min": min(shm) if shm else None, "max": max(shm) if shm else None,
                                       "last": shm[-1] if shm else None},
            "jindoud_processes": {"min": min(nprocs) if nprocs else None, "max": max(nprocs) if nprocs else None,
                                  "after_exit": leftovers},
            "state_dir_bytes": {"start": state_start, "end": state_end,
                                "max": max((s["bytes"] for s in self.samples if s["role"] == "state-dir"),
                                           default=None)},
            "final_settle_s": final_settle,
            "stops": stops,
        }

    def write_outputs(self, results):
        with open(os.path.join(self.out, "requests.jsonl"), "w") as f:
            for r in sorted(self.requests, key=lambda r: r["start"]):
                r = dict(r, start_time=iso(r["start"]))
                f.write(json.dumps(r) + "\n")
        cols = ["t", "wall", "process", "role", "incarnation", "pid", "rss_kb", "fds", "threads", "bytes"]
        with open(os.path.join(self.out, "samples.csv"), "w") as f:
            f.write(",".join(cols) + "\n")
            for s in self.samples:
                f.write(",".join(str(round(s[c], 2) if c == "t" else s[c]) for c in cols) + "\n")
        try:
            self.plot(os.path.join(self.out, "rss.png"))
            results["plot"] = os.path.join(self.out, "rss.png")
        except Exception as e:
            results["plot"] = f"not drawn: {e!r}"
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
        self.events_file.close()
        if self.args.doc:
            write_doc_section(self.args.doc, results, os.path.join(self.out, "rss.png"))

    def plot(self, path):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, (ax, ax2) = plt.subplots(2, 1, figsize=(12, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        series = collections.OrderedDict()
        for s in self.samples:
            if s["role"] in ("coordinator", "worker"):
                series.setdefault(s["process"], []).append((s["t"] / 60, s["rss_kb"] / 1024, s["fds"]))
        for name, pts in series.items():
            # break the line at restarts (gaps in sampling)
            xs, ys, fs = [], [], []
            prev = None
            for x, y, fd in pts:
                if prev is not None and x - prev > 3 * self.args.sample_every / 60:
                    xs.append(float("nan")); ys.append(float("nan")); fs.append(float("nan"))
                xs.append(x); ys.append(y); fs.append(fd)
                prev = x
            ax.plot(xs, ys, label=name, lw=1.2)
            ax2.plot(xs, fs, label=name, lw=1.0)
        colours = {"worker_sigkill": "red", "worker_sigterm": "orange", "worker_drain": "purple",
                   "rebalance": "green", "scale_1_2": "blue", "coordinator_restart": "black"}
        seen = set()
        for e in self.events:
            k = e["kind"].replace(":begin", "")
            if e["kind"].endswith(":begin") and k in colours:
                lab = k if k not in seen else None
                seen.add(k)
                for a in (ax, ax2):
                    a.axvline(e["t"] / 60, color=colours[k], ls="--" if k != "coordinator_restart" else "-",
                              lw=0.8 if k != "coordinator_restart" else 2, alpha=0.7,
                              label=lab if a is ax else None)
        ax.set_ylabel("RSS (MiB)")
        ax.set_title(f"Jindou soak: RSS per process, chaos events marked (seed {self.seed})")
        ax.legend(fontsize=7, ncol=3, loc="upper left")
        ax2.set_ylabel("open fds")
        ax2.set_xlabel("minutes since start")
        ax.grid(alpha=0.3)
        ax2.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def write_doc_section(doc, results, plot):
    """Replaces the 'soak' section of DOC with a summary of RESULTS (as jindouctl bench does)."""
    base = os.path.dirname(os.path.abspath(doc))
    image = None
    if os.path.exists(plot):
        os.makedirs(os.path.join(base, "reliability"), exist_ok=True)
        image = "reliability/soak-rss.png"
        with open(plot, "rb") as src, open(os.path.join(base, image), "wb") as dst:
            dst.write(src.read())
    with open(os.path.join(base, "reliability", "soak.json"), "w") as f:
        json.dump(results, f, indent=1)
    r, fail = results["requests"], results["failures"]
    lat = results["latency_s_ok"]

    def row(name, p):
        return f"| {name} | {p['n']} | {p['p50']:.3f} | {p['p90']:.3f} | {p['p99']:.3f} | {p['max']:.3f} |" if p else f"| {name} | 0 | | | | |"
    lines = [
        "## Soak and chaos (`tools/soak.py`)",
        "",
        f"Run {results['started']} → {results['ended']} ({results['duration_s'] / 60:.1f} min), seed {results['seed']}, "
        f"{results['clients']} client threads (official `openai` client, retries off), {results['machine']['cpus']} CPUs "
        f"(load average at the end {results['machine']['loadavg_end']}). Command: `{results['command']}`.",
        "",
        "| requests | succeeded | failed outside the coordinator restart | failed in the restart window "
        "(in flight at SIGTERM / started while down) | completed/s |",
        "|---:|---:|---:|---:|---:|",
        f"| {r['sent']} | {r['succeeded']} | {fail['outside_restart_window']['count']} | "
        f"{fail['in_coordinator_restart_window']['count']} ({fail['in_coordinator_restart_window']['in_flight_at_sigterm']} / "
        f"{fail['in_coordinator_restart_window']['started_while_down']}) | {r['completed_per_s']} |",
        "",
        "Chaos events: " + ", ".join(f"{k} × {v}" for k, v in sorted(results["events"].items())) + ".",
        "",
        "Latency of successful requests (seconds):",
        "",
        "| kind | n | p50 | p90 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
        row("streamed", lat["streamed"]), row("non-streamed", lat["non_streamed"]), row("time to first token", lat["streamed_ttft"]),
        "",
        "Processes (RSS and open file descriptors over the whole run, every incarnation):",
        "",
        "| process | role | incarnations | RSS MB min | RSS MB max | fds min | fds max |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, p in results["processes"].items():
        lines.append(f"| {name} | {p['role']} | {p['incarnations']} | {p['rss_mb_min']} | {p['rss_mb_max']} | {p['fds_min']} | {p['fds_max']} |")
    sd = results["state_dir_bytes"]
    lines += ["", f"State directory: {sd['start']} bytes at the start, {sd['end']} at the end, at most {sd['max']}. "
              f"`/dev/shm` Jindou entries at the end: {results['dev_shm_jindou_entries']['last']}; jindoud processes left after "
              f"the driver exited: {results['jindoud_processes']['after_exit']}. Anomalies: {len(results['anomalies'])}."]
    for kind, group in fail["outside_restart_window"]["by_type"].items():
        lines.append(f"- failure `{kind}` × {group['count']}: {json.dumps(group['examples'][:1])}")
    for kind, group in fail["in_coordinator_restart_window"]["by_type"].items():
        lines.append(f"- restart-window failure `{kind}` × {group['count']}: {json.dumps(group['examples'][:1])}")
    for a in results["anomalies"][:10]:
        lines.append(f"- anomaly: {json.dumps(a)[:300]}")
    if image:
        lines += ["", f"![RSS and open files per process over the soak, chaos events marked]({image})"]
    section = "\n".join(lines)
    replace_section(doc, "soak", section)


class IncompleteResponse(Exception):
    pass


def dir_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def count_procs(exe):
    exe = os.path.realpath(exe)
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.path.realpath(f"/proc/{pid}/exe") == exe:
                    n += 1
            except OSError:
                pass
    return n


def uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except Exception:
        return None


def tail(path, n):
    try:
        with open(path, errors="replace") as f:
            return f.readlines()[-n:]
    except OSError:
        return []


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jindoud", required=True)
    ap.add_argument("--jindouctl", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--out", default="/tmp/soak")
    ap.add_argument("--seed", type=int, default=None, help="chaos and client seed (default: random, printed)")
    ap.add_argument("--chaos-min", type=float, default=20, help="least seconds between chaos events")
    ap.add_argument("--chaos-max", type=float, default=60, help="most seconds between chaos events")
    ap.add_argument("--sample-every", type=float, default=5)
    ap.add_argument("--settle-timeout", type=float, default=90,
                    help="seconds to wait for the cluster to settle (all workers ready, 2 replicas) before an event")
    ap.add_argument("--request-timeout", type=float, default=60)
    ap.add_argument("--doc", default=None,
                    help="markdown file whose 'soak' section (between BEGIN/END soak markers) gets the results, "
                         "e.g. docs/reliability.md; the plot is copied beside it as reliability/soak-rss.png")
    args = ap.parse_args()
    args.jindoud = os.path.abspath(args.jindoud)
    args.jindouctl = os.path.abspath(args.jindouctl)
    args.model = os.path.abspath(args.model)
    soak = Soak(args)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    code = 1
    try:
        code = soak.run()
    finally:
        # last resort: no child survives the driver
        for p in soak.procs.values():
            if p.alive():
                p.popen.kill()
                p.popen.wait()
    sys.exit(code)


if __name__ == "__main__":
    main()
