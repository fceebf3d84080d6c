#!/usr/bin/env python3
"""Runs GGUF files through llama.cpp itself and through `jindouctl generate`, on the prompts of
a fixture's goldens, and reports how far apart they are — and how far llama.cpp is from the
transformers goldens, i.e. what the file can say about the checkpoint.

    /work/venv/bin/python tools/compare_with_llama_cpp.py --llama-cpp /path/to/llama.cpp \\
        --jindouctl .build/debug/jindouctl \\
        Tests/Fixtures/gguf/kimi-k2-tiny-f32.gguf:kimi-k2-tiny \\
        Tests/Fixtures/gguf/deepseek-v3-tiny-f32.gguf:deepseek-v3-tiny

`--llama-cpp` is a llama.cpp source tree with libllama built (`build/bin/libllama.so`, e.g.
`cmake -B build && cmake --build build --target llama`); tools/llama_cpp_logits.c is compiled
against it with the system C compiler. Each argument is FILE.gguf:FIXTURE. Compared: the logits
of the last prompt position (what `jindouctl generate --emit-logits` prints) and the greedy
tokens, for every golden case at the configured experts-per-token. Exits non-zero when Jindou
and llama.cpp differ by more than 1e-4 or choose other tokens. Not part of `swift test`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parent.parent


def build_runner(llama_cpp: Path, into: Path) -> Path:
    runner = into / "llama_cpp_logits"
    libraries = llama_cpp / "build" / "bin"
    subprocess.run(["cc", "-O1", str(ROOT / "tools" / "llama_cpp_logits.c"), "-I", str(llama_cpp / "include"),
                    "-I", str(llama_cpp / "ggml" / "include"), "-L", str(libraries), "-lllama", "-lggml", "-lggml-base",
                    f"-Wl,-rpath,{libraries}", "-o", str(runner)], check=True)
    return runner


def llama_cpp(runner: Path, gguf: str, ids: list[int], new: int) -> tuple[np.ndarray, list[int]]:
    out = subprocess.run([str(runner), gguf, str(new)] + [str(i) for i in ids], capture_output=True)
    if out.returncode != 0:
        raise RuntimeError(f"llama.cpp failed on {gguf} ({out.returncode}): {out.stderr.decode(errors='replace')[-1500:]}")
    prefill, tokens = [], []
    for line in out.stdout.decode().splitlines():
        fields = line.split()
        if fields[0] == "P":
            prefill.append([float(x) for x in fields[2:]])
        elif fields[0] == "G":
            tokens.append(int(fields[2]))
    return np.array(prefill, dtype=np.float64), tokens


def jindou(jindouctl: str, gguf: str, ids: list[int], new: int) -> tuple[np.ndarray, list[int]]:
    out = subprocess.run([jindouctl, "generate", "--model", gguf, "--prompt-ids", ",".join(map(str, ids)),
                          "--max-new-tokens", str(new), "--json", "--emit-logits"], capture_output=True, check=True)
    result = json.loads(out.stdout)
    return np.array(result["last_logits"], dtype=np.float64), result["token_ids"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-cpp", type=Path, required=True)
    parser.add_argument("--jindouctl", default=str(ROOT / ".build" / "debug" / "jindouctl"))
    parser.add_argument("pairs", nargs="+", help="FILE.gguf:FIXTURE")
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as scratch:
        runner = build_runner(args.llama_cpp.resolve(), Path(scratch))
        for pair in args.pairs:
            gguf, fixture = pair.rsplit(":", 1)
            golden = json.loads((ROOT / "Tests" / "Fixtures" / fixture / "golden.json").read_text())
            tensors = load_file(str(ROOT / "Tests" / "Fixtures" / fixture / "golden.safetensors"))
            configured = golden["cases"][0]["experts_per_token"]
            for case in golden["cases"]:
                if case["experts_per_token"] != configured:
                    continue  # llama.cpp has no per-request experts-per-token
                ids, new = case["prompt_ids"], case["max_new_tokens"]
                theirs, their_tokens = llama_cpp(runner, gguf, ids, new)
                ours, our_tokens = jindou(args.jindouctl, gguf, ids, new)
                expected = tensors[f"case{case['index']}.prefill_logits"]
                difference = float(np.abs(ours - theirs[-1]).max())
                from_goldens = float(np.abs(theirs - expected).max())
                same = our_tokens == their_tokens
                print(f"{Path(gguf).name} {case['name']}: Jindou vs llama.cpp {difference:.2e}, tokens "
                      f"{'equal' if same else 'differ'}; llama.cpp vs transformers {from_goldens:.2e}")
                failed |= difference > 1e-4 or not same
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
