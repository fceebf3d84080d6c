#!/usr/bin/env python3
"""Cross-checks `jindouctl generate` (or a running cluster) against transformers on any
checkpoint directory, e.g. the unseen ones `make_fixtures.py --unseen DIR` writes:

    /work/venv/bin/python tools/compare_with_transformers.py DIR [DIR ...] \
        [--jindouctl .build/release/jindouctl] [--coordinator URL] [--experts-per-token K|auto:T]

For each checkpoint and a few random prompts it prints whether the greedy tokens are
identical and the max |Δlogit| of the last prompt position. Exit status 1 if any check
exceeds --tolerance (default 1e-3, the foundation issue's bound for unseen checkpoints).
"""
import argparse
import json
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# fixture_vision first: it imports make_fixtures for its helpers, which imports fixture_vision
# back; starting from make_fixtures would leave that module half-initialised.
import fixture_vision  # noqa: E402,F401
from make_fixtures import load, read_config  # noqa: E402  (kimi_k2 and FP8 checkpoints need its loader)

torch.set_num_threads(1)


def transformers_run(model, prompt, n):
    with torch.no_grad():
        out = model(torch.tensor([prompt]), use_cache=True)
        last = out.logits[0, -1].float()
        cache, logits, tokens = out.past_key_values, out.logits[0, -1], []
        for _ in range(n):
            token = int(logits.float().argmax())
            tokens.append(token)
            out = model(torch.tensor([[token]]), past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[0, -1]
    return last, tokens


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--jindouctl", default=".build/debug/jindouctl")
    parser.add_argument("--coordinator", help="ask a running cluster instead of loading the model in-process")
    parser.add_argument("--prompts", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--tolerance", type=float, default=1e-3)
    args = parser.parse_args()

    failures = 0
    for directory in args.checkpoints:
        config = read_config(directory)
        method = (config.get("quantization_config") or {}).get("quant_method")
        dtype = method if method else config.get("dtype", config.get("torch_dtype"))
        # Jindou computes in fp32 over exactly widened (FP8, MXFP4: dequantised) weights: compare with that.
        model = load(directory, torch.float32)
        generator = torch.Generator().manual_seed(99)
        for p in range(args.prompts):
            length = [6, 17, 33][p % 3]
            prompt = torch.randint(0, model.config.vocab_size, (length,), generator=generator).tolist()
            reference_logits, reference_tokens = transformers_run(model, prompt, args.max_new_tokens)
            command = [args.jindouctl, "generate", "--prompt-ids", ",".join(map(str, prompt)),
                       "--max-new-tokens", str(args.max_new_tokens), "--ignore-eos", "--json", "--emit-logits"]
            command += ["--coordinator", args.coordinator] if args.coordinator else ["--model", directory]
            result = json.loads(subprocess.check_output(command))
            difference = float((torch.tensor(result["last_logits"]) - reference_logits).abs().max())
            same = result["token_ids"] == reference_tokens
            ok = same and difference <= args.tolerance
            failures += not ok
            print(f"{'ok ' if ok else 'BAD'} {directory} ({dtype}) prompt {length:2} tokens: "
                  f"greedy identical={same} max|Δlogit|={difference:.2e}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
