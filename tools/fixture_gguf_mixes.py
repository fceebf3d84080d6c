#!/usr/bin/env python3
"""Writes Tests/Fixtures/gguf-mixes/: GGUF files in the quantisation mixes users download,
made by llama.cpp's own tools from checkpoints transformers wrote, with llama.cpp's own logits
on them, so the Swift tests can check Jindou against llama.cpp without Python.

    /work/venv/bin/python tools/fixture_gguf_mixes.py            # builds llama.cpp via tools/llama_cpp.sh
    /work/venv/bin/python tools/fixture_gguf_mixes.py --llama-cpp /path/to/llama.cpp --work /tmp/x

Steps (tools/README.md has the details and the manifest schema):
1. two checkpoints, built with transformers' own classes, re-initialised as make_fixtures.py does
   and saved in bf16 (not committed: their configs are in the manifest):
   - `qwen3-moe-w256` (Qwen3-MoE): every matrix's input width a multiple of 256 (hidden 256,
     8 heads × 32 with 2 KV heads, moe_intermediate 256), 2 layers, 3 experts, top-2,
     norm_topk_prob, untied head, a 320-token BPE tokenizer (fixture_text). 3 experts, not 8:
     experts are ~70% of every file, and with 8 the set would be ~50 MB; llama-quantize also
     special-cases n_expert == 8 (Mixtral: attn_k/attn_v to Q8_0, attn_output to Q5_K), which real
     Qwen3-MoE files (128 experts) never get. Its only other expert-count rule (n_expert >= 4 or
     n_gqa >= 4 → Q4_K attn_v in IQ1/IQ2 mixes) is met through GQA 4, as in the real models, so
     every mix chooses the types a real Qwen3-MoE download has.
   - `deepseek-v3-mixed` (DeepSeek-V3 → llama.cpp's deepseek2): hidden 256 but q_lora 128,
     kv_lora 128, nope/rope/v 32, dense intermediate 384 and moe_intermediate 128, so K- and
     IQ-quant files also hold llama-quantize's fallback types (as DeepSeek-V2-Lite and GLM-4.5-Air
     files do: their moe_intermediate 1408 is not a multiple of 256).
2. each converted to an F32 GGUF by the llama.cpp tree's convert_hf_to_gguf.py (the pre-tokenizer
   name workaround of tools/fixture_gguf.py; nothing else changed);
3. an importance matrix per checkpoint: llama-imatrix on `imatrix-corpus.txt` (committed);
4. llama-quantize into every mix of QWEN_MIXES and DEEPSEEK_MIXES (IQ mixes and the UD-style mix
   with the imatrix), the UD-style mix from per-tensor overrides (`--tensor-type`), committed as
   its llama-gguf-split parts;
5. llama.cpp's logits (tools/llama_cpp_logits.c: one thread, F32 KV cache, no flash attention)
   on 4 prompts per file: the last prompt position's logits (`<file>.logits.f32`), 8 greedy
   tokens, every row's top-1/top-2 margin and llama.cpp's expert choices, into manifest.json;
6. per file, the largest |Δlogit| between llama.cpp and float64 transformers on the weights
   dequantised from that file by gguf-py (`llama_vs_exact_dequantized_max_abs`): what llama.cpp's
   kernels themselves add (they round activations to 8-bit blocks for quantised matmuls), and
   where the two chose different experts;
7. the imatrix and every quantisation run a second time (and with 2 threads) into a scratch
   directory, to record whether they are bit-reproducible.

Deterministic for the same tool versions and CPU (manifest.json says what was checked). Needs
torch, transformers, numpy, tokenizers and gguf (PyPI gguf >= 0.19 dequantises every type used).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import runpy
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "Fixtures" / "gguf-mixes"
sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import PIL  # noqa: F401
except ImportError:
    # make_fixtures imports fixture_vision (Pillow) for its own Qwen3-VL fixture only; nothing here uses it.
    import types
    sys.modules["fixture_vision"] = types.ModuleType("fixture_vision")

SDIST = "llama-cpp-python 0.3.36 sdist (PyPI), vendor/llama.cpp"
NEW_TOKENS = 8
# Seed search: the F32 file's smallest top-1/top-2 gap over every recorded and greedy row.
MIN_F32_TOP_GAP = 1e-2
SEED_ATTEMPTS = 12
IMATRIX_CONTEXT = 64


@dataclass
class Mix:
    name: str                      # the file's mix name (llama-quantize's spelling, or UD-…)
    ftype: str                     # llama-quantize's type argument
    imatrix: bool = False
    options: list[str] = field(default_factory=list)  # extra llama-quantize options
    note: str | None = None
    split: int | None = None       # committed as llama-gguf-split parts of at most this many tensors


# The mixes users download. IQ mixes use the imatrix (llama-quantize refuses IQ2_XXS, IQ2_XS,
# IQ2_S and IQ1_* without one); K and legacy mixes are made without, as llama-quantize's default.
QWEN_MIXES = [Mix(n, n) for n in ("Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "Q4_0", "Q4_1", "Q5_0",
                                  "Q5_1", "Q3_K_M", "Q3_K_S", "Q2_K")]
QWEN_MIXES += [Mix(n, n, imatrix=True) for n in ("IQ4_XS", "IQ4_NL", "IQ3_XXS", "IQ3_S", "IQ2_XXS", "IQ2_XS",
                                                 "IQ2_S", "IQ1_S", "IQ1_M")]
QWEN_MIXES += [Mix(n, n) for n in ("MXFP4_MOE", "TQ1_0", "TQ2_0")]
# Like unsloth's dynamic ("UD") quants: 1–2-bit experts, 4-bit attention, a wider last-layer
# attention value projection, BF16 embeddings, Q6_K head. --tensor-type takes a regex searched in
# the tensor name; the first matching pattern wins.
QWEN_MIXES += [Mix("UD-IQ1_S", "IQ1_S", imatrix=True, options=[
    "--token-embedding-type", "bf16", "--output-tensor-type", "q6_k",
    "--tensor-type", r"ffn_down_exps=iq2_xxs", "--tensor-type", r"ffn_(gate|up)_exps=iq1_s",
    "--tensor-type", r"blk\.1\.attn_v=q8_0", "--tensor-type", r"attn_(q|k|v|output)=q4_k"],
    note="unsloth-style dynamic mix from per-tensor overrides; committed only as its 3-part split, as large UD "
         "files are published", split=10)]  # 27 tensors → 3 parts
# Between them every fallback: Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, Q2_K/Q3_K → Q4_0, IQ* → IQ4_NL.
DEEPSEEK_MIXES = [Mix("Q4_K_M", "Q4_K_M"), Mix("Q5_K_M", "Q5_K_M"), Mix("IQ4_XS", "IQ4_XS", imatrix=True),
                  Mix("Q2_K", "Q2_K")]


@dataclass
class Checkpoint:
    name: str
    architecture: str   # make_fixtures Spec architecture
    seed: int
    config: dict
    family: str         # tokenizer family
    mixes: list


# Checkpoints copied to Tests/Fixtures/<name> (the others are only described in the manifest).
COMMITTED_CHECKPOINTS = {"qwen3-moe-w256"}


def checkpoints() -> list[Checkpoint]:
    rope = {"rope_type": "default", "rope_theta": 10000.0}
    qwen = dict(vocab_size=320, hidden_size=256, num_attention_heads=8, num_key_value_heads=2, head_dim=32,
                num_hidden_layers=2, num_experts=3, num_experts_per_tok=2, moe_intermediate_size=256,
                intermediate_size=256, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
                tie_word_embeddings=False, max_position_embeddings=256, rope_parameters=rope)
    deepseek = dict(vocab_size=320, hidden_size=256, num_attention_heads=4, num_key_value_heads=4,
                    num_hidden_layers=2, first_k_dense_replace=1, intermediate_size=384, moe_intermediate_size=128,
                    q_lora_rank=128, kv_lora_rank=128, qk_nope_head_dim=32, qk_rope_head_dim=32, v_head_dim=32,
                    n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1, n_shared_experts=1,
                    routed_scaling_factor=2.5, norm_topk_prob=True, rope_interleave=True, rope_parameters=rope,
                    tie_word_embeddings=False, max_position_embeddings=256, num_mtp_layers=0)
    return [Checkpoint("qwen3-moe-w256", "qwen3_moe", 17, qwen, "qwen3", QWEN_MIXES),
            Checkpoint("deepseek-v3-mixed", "deepseek_v3", 23, deepseek, "deepseek", DEEPSEEK_MIXES)]


# ---------------------------------------------------------------------------------------
# Small helpers

def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(argv: list, cwd: Path, what: str) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, errors="replace")
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed ({out.returncode}): {(out.stderr or out.stdout)[-3000:]}")
    return out


def shown(argv: list, work: Path, bin_dir: Path) -> list[str]:
    """A command line as the manifest records it: tools by name, the scratch directory as $WORK."""
    result = []
    for a in map(str, argv):
        a = a.replace(str(bin_dir) + "/", "").replace(str(work), "$WORK")
        result.append(a)
    return result


def top_gap(row) -> float:
    import numpy as np
    two = np.sort(np.asarray(row, dtype=np.float64))[-2:]
    return float(two[1] - two[0])


# ---------------------------------------------------------------------------------------
# Checkpoints (transformers)

def write_checkpoint(ckpt: Checkpoint, seed: int, directory: Path, llama_cpp: Path) -> None:
    """The checkpoint as a Hub download has it: bf16 safetensors, config.json, tokenizer."""
    import torch
    import fixture_text
    import make_fixtures
    shutil.rmtree(directory, ignore_errors=True)
    spec = make_fixtures.Spec(ckpt.name, ckpt.architecture, seed, ckpt.config, dtype=torch.bfloat16)
    model = make_fixtures.build_model(spec).to(torch.bfloat16)
    model.save_pretrained(str(directory))
    if ckpt.family == "qwen3":
        template = (llama_cpp / "models/templates/Qwen-Qwen3-0.6B.jinja").read_text(encoding="utf-8")
        fixture_text.write_model_tokenizer(str(directory), "qwen3", ckpt.config["vocab_size"], template)
    else:
        template = (llama_cpp / "models/templates/deepseek-ai-DeepSeek-V3.1.jinja").read_text(encoding="utf-8")
        fixture_text.write_deepseek_tokenizer(str(directory), "deepseek", ckpt.config["vocab_size"], template)
        # DeepSeek's config.json says how experts are scored; transformers 5 does not write it, and
        # without it the converter writes no expert_gating_func (llama.cpp would use softmax).
        make_fixtures.rewrite_config(str(directory / "config.json"), False, make_fixtures.DS_HUB_KEYS)
    reloaded = make_fixtures.load(str(directory), torch.bfloat16)
    saved = model.state_dict()
    for key, value in reloaded.state_dict().items():
        assert torch.equal(value, saved[key]), f"{ckpt.name}: reload changed {key}"


def prompts_for(ckpt: Checkpoint, seed: int, directory: Path) -> list[dict]:
    """4 prompts: 1, 6 and 17 random ids, and 48 ids of real text through the checkpoint's tokenizer."""
    import numpy as np
    import fixture_text
    from tokenizers import Tokenizer
    rng = np.random.default_rng(seed * 7919)
    vocab = ckpt.config["vocab_size"]
    prompts = [{"name": f"random-{n}", "prompt_ids": [int(i) for i in rng.integers(0, vocab, n)]} for n in (1, 6, 17)]
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    text = " ".join(fixture_text.corpus()[:6])
    ids = tokenizer.encode(text, add_special_tokens=False).ids[:48]
    assert len(ids) == 48, "corpus too short for the text prompt"
    prompts.append({"name": "text-48", "prompt_ids": ids, "text": tokenizer.decode(ids)})
    for index, prompt in enumerate(prompts):
        prompt["index"] = index
    return prompts


def imatrix_corpus() -> str:
    """Deterministic text for llama-imatrix: fixture_text's first 18 corpus texts (English,
    Chinese, Japanese/Korean, emoji, whitespace runs, numbers, accents, chat markup; ~1,000 tokens
    with the tiny tokenizers: 16 chunks of IMATRIX_CONTEXT)."""
    import fixture_text
    return "\n".join(fixture_text.corpus()[:18]) + "\n"


# ---------------------------------------------------------------------------------------
# GGUF ↔ transformers names (for the exact reference on dequantised weights)

QWEN_LAYER = {"attn_norm": "input_layernorm.weight", "attn_q": "self_attn.q_proj.weight",
              "attn_k": "self_attn.k_proj.weight", "attn_v": "self_attn.v_proj.weight",
              "attn_output": "self_attn.o_proj.weight", "attn_q_norm": "self_attn.q_norm.weight",
              "attn_k_norm": "self_attn.k_norm.weight", "ffn_norm": "post_attention_layernorm.weight",
              "ffn_gate_inp": "mlp.gate.weight", "ffn_down_exps": "mlp.experts.down_proj"}
DEEPSEEK_LAYER = {"attn_norm": "input_layernorm.weight", "attn_q_a": "self_attn.q_a_proj.weight",
                  "attn_q_a_norm": "self_attn.q_a_layernorm.weight", "attn_q_b": "self_attn.q_b_proj.weight",
                  "attn_kv_a_mqa": "self_attn.kv_a_proj_with_mqa.weight",
                  "attn_kv_a_norm": "self_attn.kv_a_layernorm.weight", "attn_output": "self_attn.o_proj.weight",
                  "ffn_norm": "post_attention_layernorm.weight", "ffn_gate": "mlp.gate_proj.weight",
                  "ffn_up": "mlp.up_proj.weight", "ffn_down": "mlp.down_proj.weight",
                  "ffn_gate_inp": "mlp.gate.weight", "exp_probs_b": "mlp.gate.e_score_correction_bias",
                  "ffn_down_exps": "mlp.experts.down_proj", "ffn_gate_shexp": "mlp.shared_experts.gate_proj.weight",
                  "ffn_up_shexp": "mlp.shared_experts.up_proj.weight",
                  "ffn_down_shexp": "mlp.shared_experts.down_proj.weight"}
GLOBAL = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
          "output.weight": "lm_head.weight"}


def dequantised_state(path: Path, ckpt: Checkpoint) -> dict:
    """The transformers state dict a GGUF file means, every tensor dequantised by gguf-py
    (float64). Fused/split tensors are put back: ffn_gate_exps + ffn_up_exps → gate_up_proj,
    attn_k_b + attn_v_b → kv_b_proj."""
    import numpy as np
    import torch
    from gguf import GGUFReader
    from gguf.quants import dequantize
    reader = GGUFReader(str(path))
    tensors = {t.name: np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float64).reshape(
        [int(d) for d in reversed(t.shape)]) for t in reader.tensors}
    per_layer = QWEN_LAYER if ckpt.architecture == "qwen3_moe" else DEEPSEEK_LAYER
    state, used = {}, set()
    for name, hf in GLOBAL.items():
        state[hf] = tensors[name]
        used.add(name)
    c = ckpt.config
    for i in range(c["num_hidden_layers"]):
        for short, hf in per_layer.items():
            name = f"blk.{i}.{short}." + ("bias" if short == "exp_probs_b" else "weight")
            if name in tensors:
                state[f"model.layers.{i}.{hf}"] = tensors[name]
                used.add(name)
        gate, up = f"blk.{i}.ffn_gate_exps.weight", f"blk.{i}.ffn_up_exps.weight"
        if gate in tensors:
            state[f"model.layers.{i}.mlp.experts.gate_up_proj"] = np.concatenate([tensors[gate], tensors[up]], axis=1)
            used |= {gate, up}
        k_b, v_b = f"blk.{i}.attn_k_b.weight", f"blk.{i}.attn_v_b.weight"
        if k_b in tensors:
            # converter: kv_b.view(heads, nope + v, rank) split into k_b (transposed: [heads, rank, nope]) and v_b
            kv = np.concatenate([tensors[k_b].transpose(0, 2, 1), tensors[v_b]], axis=1)
            state[f"model.layers.{i}.self_attn.kv_b_proj.weight"] = kv.reshape(-1, kv.shape[-1])
            used |= {k_b, v_b}
    unused = set(tensors) - used
    assert not unused, f"{path.name}: tensors not mapped back: {sorted(unused)}"
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


def exact_model(directory: Path, state: dict):
    """transformers' model of the checkpoint in float64 with `state` loaded (strict)."""
    import torch
    import make_fixtures
    model = make_fixtures.load(str(directory), torch.float32).double()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected, f"unexpected tensors {unexpected}"
    assert all("rotary_emb" in m for m in missing), f"tensors missing from the GGUF: {missing}"
    return model.eval()


def exact_run(model, prompts: list[dict]) -> list[dict]:
    """Per prompt: `logits` (last position, float64 [V]), greedy `tokens`, and from the prefill
    `experts` ({MoE layer: [[chosen experts, ascending] per position]}) and `routing_margin` (the
    smallest K-th minus (K+1)-th selection score over every position and MoE layer: softmax
    probability for Qwen3-MoE, sigmoid + correction bias for DeepSeek)."""
    import torch
    import make_fixtures
    k = model.config.num_experts_per_tok
    layers = [i for i, layer in enumerate(model.model.layers) if hasattr(layer.mlp, "gate")]
    results = []
    for prompt in prompts:
        captured = {}

        def hook(layer):
            def record(module, inputs, outputs):
                captured.setdefault(layer, inputs[0].detach().clone())  # the first call is the prefill
            return record
        handles = [model.model.layers[i].mlp.gate.register_forward_hook(hook(i)) for i in layers]
        try:
            prefill, _, tokens = make_fixtures.greedy(model, prompt["prompt_ids"], NEW_TOKENS)
        finally:
            for h in handles:
                h.remove()
        experts, margin = {}, None
        for i in layers:
            with torch.no_grad():
                _, _, selection, _ = make_fixtures.routing(model.model.layers[i].mlp.gate, captured[i])
            order = torch.sort(selection.double(), dim=-1, descending=True, stable=True)
            experts[i] = [sorted(row[:k]) for row in order.indices.tolist()]
            gap = float((order.values[:, k - 1] - order.values[:, k]).min())
            margin = gap if margin is None else min(margin, gap)
        results.append({"logits": prefill[-1].double().numpy(), "tokens": tokens, "experts": experts,
                        "routing_margin": margin})
    return results


# ---------------------------------------------------------------------------------------
# llama.cpp

class Llama:
    def __init__(self, tree: Path):
        self.tree = tree
        self.bin = tree / "build" / "bin"
        for tool in ("llama-quantize", "llama-imatrix", "llama-gguf-split", "llama_cpp_logits"):
            assert (self.bin / tool).is_file(), f"{self.bin / tool} missing (run tools/llama_cpp.sh)"
        version = run([self.bin / "llama-imatrix", "--version"], tree, "llama-imatrix --version")
        self.version = (version.stdout + version.stderr).strip().splitlines()[0].removeprefix("version: ")
        head = tree.parent.parent / ".git" / "modules" / "vendor" / "llama.cpp" / "HEAD"
        self.commit = head.read_text().strip() if head.is_file() else "unknown"

    def logits(self, gguf: Path, ids: list[int], routing: bool = False) -> tuple:
        """(last prompt position's logits float32 [V], greedy tokens, margins of the rows the
        greedy tokens were chosen from: row 0 = last prompt position). With `routing`, a second
        run dumps llama.cpp's expert choices during the prefill (LLAMA_CPP_LOGITS_ROUTING), whose
        logits must be bitwise the first run's; then a 4th element {MoE layer: [[chosen experts,
        ascending] per position]} is returned."""
        import numpy as np
        argv = [str(self.bin / "llama_cpp_logits"), str(gguf), str(NEW_TOKENS)] + [str(i) for i in ids]
        out = subprocess.run(argv, capture_output=True, text=True, errors="replace")
        if out.returncode != 0:
            raise RuntimeError(f"llama_cpp_logits failed on {gguf.name} ({out.returncode}): {out.stderr[-2000:]}")
        last, tokens, rows = None, [], []
        for line in out.stdout.splitlines():
            tag, _, rest = line.partition(" ")
            if tag == "P":
                last = rest
            elif tag == "G":
                tokens.append(int(rest.split()[1]))
            elif tag == "D":
                rows.append(np.array(rest.split()[1:], dtype=np.float64))
        # %.9g: every float32 round-trips exactly
        last = np.array(last.split()[1:], dtype=np.float64).astype(np.float32)
        margins = [top_gap(last)] + [top_gap(r.astype(np.float32)) for r in rows]
        if not routing:
            return last, tokens, margins
        dumped = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                                env=dict(os.environ, LLAMA_CPP_LOGITS_ROUTING="1"))
        if dumped.returncode != 0:
            raise RuntimeError(f"llama_cpp_logits routing dump failed on {gguf.name}: {dumped.stderr[-2000:]}")
        plain = [l for l in dumped.stdout.splitlines() if not l.startswith("R ")]
        if plain != out.stdout.splitlines():
            raise RuntimeError(f"{gguf.name}: the routing dump changed llama.cpp's logits")
        k = self.experts_per_token(gguf)
        experts = {}
        for line in dumped.stdout.splitlines():
            if line.startswith("R "):
                layer, position, *order = map(int, line.split()[1:])
                rows_ = experts.setdefault(layer, [])
                assert position == len(rows_), "routing rows out of order"
                rows_.append(sorted(order[:k]))
        return last, tokens, margins, experts

    def tokenize(self, gguf: Path, texts: list[str]) -> list[list[int]]:
        """llama.cpp's token ids for each text (no BOS/EOS, special tokens parsed)."""
        argv = [str(self.bin / "llama_cpp_logits"), str(gguf), "--tokenize"]
        payload = b"\0".join(t.encode("utf-8") for t in texts)
        assert b"\0" not in b"".join(t.encode("utf-8") for t in texts)
        out = subprocess.run(argv, input=payload, capture_output=True)
        if out.returncode != 0:
            raise RuntimeError(f"llama_cpp_logits --tokenize failed on {gguf.name} ({out.returncode}): {out.stderr[-2000:]}")
        rows = [line.split()[2:] for line in out.stdout.decode().splitlines() if line.startswith("T ")]
        assert len(rows) == len(texts), f"{len(rows)} tokenizations for {len(texts)} texts"
        return [[int(i) for i in row] for row in rows]

    def experts_per_token(self, gguf: Path) -> int:
        from gguf import GGUFReader
        fields = GGUFReader(str(gguf)).fields
        key = next(k for k in fields if k.endswith(".expert_used_count"))
        return int(fields[key].parts[fields[key].data[0]][0])


def convert(llama: Llama, checkpoint: Path, out: Path) -> list[str]:
    """convert_hf_to_gguf.py --outtype f32 in a subprocess (it imports the tree's gguf-py)."""
    argv = [sys.executable, __file__, "--convert", checkpoint, out, "--llama-cpp", llama.tree]
    run(argv, ROOT, f"converting {checkpoint.name}")
    return ["convert_hf_to_gguf.py", "$WORK/" + checkpoint.name, "--outtype", "f32", "--outfile", "$WORK/" + out.name]


def convert_main(checkpoint: str, out: str, tree: Path) -> None:
    """The converter with tools/fixture_gguf.py's one adjustment: a tiny vocabulary's
    pre-tokenizer is named from tokenizer.json's Split regexes when the hash is unknown."""
    import fixture_gguf
    sys.path.insert(0, str(tree))
    sys.path.insert(1, str(tree / "gguf-py"))
    import conversion.base as base  # noqa: E402  (the converter's own package)
    original = base.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            regexes = fixture_gguf.pre_tokenizer_regexes(Path(self.dir_model))
            if regexes not in fixture_gguf.KNOWN_PRE_TOKENIZERS:
                raise
            return fixture_gguf.KNOWN_PRE_TOKENIZERS[regexes]

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre
    converter = tree / "convert_hf_to_gguf.py"
    sys.argv = [str(converter), checkpoint, "--outtype", "f32", "--outfile", out]
    try:
        runpy.run_path(str(converter), run_name="__main__")
    except SystemExit as exit:
        if exit.code not in (None, 0):
            raise


def census(path: Path) -> tuple[dict, dict]:
    """({type: {count, bytes}}, {tensor name: type}) of a GGUF file (types as gguf-py names them)."""
    from gguf import GGUFReader
    reader = GGUFReader(str(path))
    types, names = {}, {}
    for t in reader.tensors:
        kind = t.tensor_type.name
        entry = types.setdefault(kind, {"count": 0, "bytes": 0})
        entry["count"] += 1
        entry["bytes"] += int(t.n_bytes)
        names[t.name] = kind
    return dict(sorted(types.items())), names


def file_type_name(path: Path) -> str | None:
    from gguf import GGUFReader, LlamaFileType
    field_ = GGUFReader(str(path)).fields.get("general.file_type")
    if field_ is None:
        return None
    value = int(field_.parts[field_.data[0]][0])
    try:
        return LlamaFileType(value).name
    except ValueError:
        return str(value)


def imatrix(llama: Llama, f32: Path, cwd: Path, name: str, threads: int = 1) -> list:
    argv = [llama.bin / "llama-imatrix", "-m", f32, "-f", "imatrix-corpus.txt", "-o", name, "-c", IMATRIX_CONTEXT,
            "-t", threads, "--no-ppl"]
    out = run(argv, cwd, f"llama-imatrix on {f32.name}")
    return argv, out.stdout + out.stderr


def quantize(llama: Llama, f32: Path, out_name: str, mix: Mix, imatrix_name: str | None, cwd: Path,
             threads: int = 1) -> tuple[list, subprocess.CompletedProcess]:
    argv = [llama.bin / "llama-quantize"]
    if mix.imatrix:
        argv += ["--imatrix", imatrix_name]
    argv += mix.options + [f32, out_name, mix.ftype, threads]
    out = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, errors="replace")
    return argv, out


# ---------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-cpp", type=Path, help="llama.cpp tree with build/bin (default: tools/llama_cpp.sh)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "jindou-gguf-mixes",
                        help="checkpoints, F32 files and scratch (not committed)")
    parser.add_argument("--convert", nargs=2, metavar=("CHECKPOINT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.llama_cpp is None:
        tree = run([ROOT / "tools" / "llama_cpp.sh"], ROOT, "tools/llama_cpp.sh").stdout.strip().splitlines()[-1]
        args.llama_cpp = Path(tree)
    tree = args.llama_cpp.resolve()
    if args.convert:
        convert_main(args.convert[0], args.convert[1], tree)
        return 0

    import numpy as np
    import torch
    import transformers
    import tokenizers
    import make_fixtures
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    started = time.time()
    llama = Llama(tree)
    out_dir, work = args.out.resolve(), args.work.resolve()
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    work.mkdir(parents=True, exist_ok=True)
    (out_dir / "imatrix-corpus.txt").write_text(imatrix_corpus(), encoding="utf-8")

    manifest = {
        "generator": "tools/fixture_gguf_mixes.py",
        "llama_cpp": {"source": SDIST, "commit": llama.commit, "version": llama.version,
                      "build": "tools/llama_cpp.sh: CMake Release, GGML_NATIVE=ON, shared libraries",
                      "cpu": cpu_model()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "numpy": np.__version__, "gguf_py_for_dequantize": gguf_version(),
                     "converter_gguf_py": "the llama.cpp tree's gguf-py"},
        "harness": {"program": "tools/llama_cpp_logits.c", "threads": 1, "kv_cache": "F32",
                    "flash_attention": False, "n_ctx": 512, "new_tokens": NEW_TOKENS},
        "logits_layout": "<file stem>.logits.f32: float32 little-endian, row-major [prompts, vocab]; row i = "
                         "llama.cpp's logits at the last position of prompt i",
        "exact_reference": "transformers (eager attention and experts) in float64 on the weights gguf-py dequantises "
                           "from the file; its routers compute their scores in float32 as transformers' own do",
        "imatrix_required": "llama-quantize (this version) refuses to quantise any tensor but token_embd/output to "
                            "IQ3_XXS, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S or IQ1_M (and Q2_K inside a Q2_K_S file) without "
                            "an imatrix (src/llama-quant.cpp tensor_requires_imatrix); IQ4_XS, IQ4_NL and IQ3_S do not "
                            "need one but are made with it here, as published IQ files are",
        "checkpoints": {}, "imatrix": {}, "files": [], "refused": [], "reproducibility": {},
    }
    produced = {}   # (checkpoint, mix) → the unsplit file
    for ckpt in checkpoints():
        directory = work / ckpt.name
        f32 = work / f"{ckpt.name}-F32.gguf"
        # Seed search: the F32 file's recorded and greedy rows clearly separated.
        for attempt in range(SEED_ATTEMPTS):
            seed = ckpt.seed + 1000 * attempt
            write_checkpoint(ckpt, seed, directory, tree)
            convert_command = convert(llama, directory, f32)
            prompts = prompts_for(ckpt, seed, directory)
            f32_runs = [llama.logits(f32, p["prompt_ids"]) for p in prompts]
            gap = min(min(r[2]) for r in f32_runs)
            if gap >= MIN_F32_TOP_GAP:
                break
            print(f"  {ckpt.name} seed {seed}: F32 top gap {gap:.2e} < {MIN_F32_TOP_GAP}; another seed", file=sys.stderr)
        else:
            raise SystemExit(f"{ckpt.name}: no seed with top gap >= {MIN_F32_TOP_GAP}")
        f32_sha = sha256(f32)
        convert(llama, directory, work / f"{ckpt.name}-F32-again.gguf")
        converter_reproducible = sha256(work / f"{ckpt.name}-F32-again.gguf") == f32_sha

        # The GGUF → transformers name map, checked: the F32 file mapped back is the checkpoint exactly.
        checkpoint_state = make_fixtures.load(str(directory), torch.float32).state_dict()
        for key, value in dequantised_state(f32, ckpt).items():
            assert torch.equal(value, checkpoint_state[key].double()), f"{ckpt.name}: {key} differs after conversion"
        f32_entry = reference(llama, f32, ckpt, prompts, directory, None)

        imatrix_name = f"{ckpt.name}.imatrix.gguf"
        argv, log = imatrix(llama, f32, out_dir, imatrix_name)
        manifest["imatrix"][ckpt.name] = {
            "file": imatrix_name, "sha256": sha256(out_dir / imatrix_name), "corpus": "imatrix-corpus.txt",
            "corpus_sha256": sha256(out_dir / "imatrix-corpus.txt"), "context": IMATRIX_CONTEXT,
            "chunks": int(re.search(r"computing over (\d+) chunks", log).group(1)),
            "system_info": re.search(r"system_info: (.*)", log).group(1).strip(),
            "command": shown(argv, work, llama.bin)}
        # The Qwen3-MoE checkpoint is committed (3.4 MB): `jindouctl quantize --to MIX` of it is
        # tested byte for byte against llama-quantize's files of the same mixes.
        committed = ckpt.name in COMMITTED_CHECKPOINTS
        if committed:
            target = ROOT / "Tests" / "Fixtures" / ckpt.name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(directory, target)
        manifest["checkpoints"][ckpt.name] = {
            "architecture": checkpoint_class(directory), "dtype": "bfloat16", "seed": seed, "committed": committed,
            "config": json.loads((directory / "config.json").read_text()),
            "safetensors_sha256": {p.name: sha256(p) for p in sorted(directory.glob("*.safetensors"))},
            "tokenizer_json_sha256": sha256(directory / "tokenizer.json"),
            "prompts": prompts,
            "f32_gguf": dict({"committed": False, "sha256": f32_sha, "bytes": f32.stat().st_size,
                              "converter_command": convert_command,
                              "converter_bit_reproducible": converter_reproducible}, **f32_entry),
        }
        print(f"{ckpt.name}: seed {seed}, F32 llama.cpp vs transformers f64 "
              f"{f32_entry['llama_vs_exact_dequantized_max_abs']:.2e}", flush=True)

        for mix in ckpt.mixes:
            name = f"{ckpt.name}-{mix.name}.gguf"
            argv, result = quantize(llama, f32, name, mix, imatrix_name, out_dir)
            if result.returncode != 0:
                (out_dir / name).unlink(missing_ok=True)
                manifest["refused"].append({"checkpoint": ckpt.name, "mix": mix.name,
                                            "command": shown(argv, work, llama.bin),
                                            "reason": refusal(result.stdout + result.stderr)})
                print(f"  {name}: refused ({manifest['refused'][-1]['reason']})", flush=True)
                continue
            path = out_dir / name
            entry = describe(llama, path, ckpt, mix, prompts, directory, f32_runs, argv, work,
                             result.stdout + result.stderr, imatrix_name if mix.imatrix else None)
            if mix.split:
                path = split(llama, path, mix.split, entry, prompts, work)
            produced[(ckpt.name, mix.name)] = path
            manifest["files"].append(entry)
            kinds = ", ".join(f"{k} {v['count']}" for k, v in entry["tensor_types"].items())
            print(f"  {entry['file']}: {entry['bytes']} bytes, {kinds}; llama.cpp vs exact "
                  f"{entry['llama_vs_exact_dequantized_max_abs']:.3e} (same routing: "
                  f"{entry['llama_vs_exact_dequantized_max_abs_same_routing']})", flush=True)

    manifest["reproducibility"] = reproducibility(llama, work, out_dir, produced)
    (out_dir / "manifest.json").write_text(to_json(manifest) + "\n", encoding="utf-8")
    total = sum(p.stat().st_size for p in out_dir.iterdir())
    print(f"wrote {len(list(out_dir.iterdir()))} files, {total / 1e6:.2f} MB in {out_dir} "
          f"({time.time() - started:.0f} s)")
    return 0


def reference(llama: Llama, path: Path, ckpt: Checkpoint, prompts: list, directory: Path, runs: list | None) -> dict:
    """llama.cpp against float64 transformers on the weights dequantised from `path`: per prompt
    the max |Δlogit| at the last position, the greedy tokens, routing differences (positions × MoE
    layers of the prefill where llama.cpp chose another expert set) and the reference's smallest
    routing margin; over the file the max, and the max over prompts routed identically."""
    import numpy as np
    runs = runs or [llama.logits(path, p["prompt_ids"], routing=True) for p in prompts]
    exact = exact_run(exact_model(directory, dequantised_state(path, ckpt)), prompts)
    cases = []
    for prompt, run_, ex in zip(prompts, runs, exact):
        logits, tokens, margins, experts = run_
        assert sorted(experts) == sorted(ex["experts"]), f"{path.name}: MoE layers differ"
        differences = sum(a != b for layer in ex["experts"] for a, b in zip(experts[layer], ex["experts"][layer]))
        cases.append({"prompt": prompt["index"], "greedy_tokens": tokens, "last_margin": margins[0],
                      "greedy_margins": margins,
                      "experts": [{"layer": layer, "chosen": experts[layer]} for layer in sorted(experts)],
                      "exact_max_abs": float(np.abs(logits.astype(np.float64) - ex["logits"]).max()),
                      "exact_greedy_tokens": ex["tokens"], "exact_routing_margin": ex["routing_margin"],
                      "routing_differences": differences})
    same = [c["exact_max_abs"] for c in cases if c["routing_differences"] == 0]
    return {"cases": cases,
            "llama_vs_exact_dequantized_max_abs": max(c["exact_max_abs"] for c in cases),
            "llama_vs_exact_dequantized_max_abs_same_routing": max(same) if same else None,
            "routing_differences": sum(c["routing_differences"] for c in cases),
            "greedy_tokens_equal_exact": all(c["greedy_tokens"] == c["exact_greedy_tokens"] for c in cases)}


def describe(llama: Llama, path: Path, ckpt: Checkpoint, mix: Mix, prompts: list, directory: Path, f32_runs: list,
             argv: list, work: Path, log: str, imatrix_name: str | None) -> dict:
    """One file's manifest entry: census, llama.cpp's logits (written next to it), the exact reference."""
    import numpy as np
    types, names = census(path)
    runs = [llama.logits(path, p["prompt_ids"], routing=True) for p in prompts]
    logits_name = path.name.removesuffix(".gguf") + ".logits.f32"
    np.stack([r[0] for r in runs]).astype("<f4").tofile(path.parent / logits_name)
    fallbacks = re.findall(r"(\S+)\s+- ncols\s+(\d+) not divisible by\s+(\d+) \(required for type\s+(\S+)\).*?"
                           r"falling back to\s+(\S+)", log)
    entry = {
        "file": path.name, "checkpoint": ckpt.name, "mix": mix.name, "ftype": mix.ftype,
        "general_file_type": file_type_name(path), "bytes": path.stat().st_size, "sha256": sha256(path),
        "imatrix": imatrix_name, "command": shown(argv, work, llama.bin),
        "tensor_types": types, "tensors": names,
        "fallbacks": [{"tensor": t, "ncols": int(n), "wanted": w, "used": u} for t, n, _, w, u in fallbacks],
        "logits": {"file": logits_name, "shape": [len(prompts), int(runs[0][0].shape[0])], "dtype": "float32"},
        "vs_f32_max_abs": max(float(np.abs(r[0].astype(np.float64) - f[0].astype(np.float64)).max())
                              for r, f in zip(runs, f32_runs)),
    }
    entry.update(reference(llama, path, ckpt, prompts, directory, runs))
    if mix.note:
        entry["note"] = mix.note
    return entry


def split(llama: Llama, path: Path, max_tensors: int, entry: dict, prompts: list, work: Path) -> Path:
    """Replaces a committed file by its llama-gguf-split parts (the unsplit file moves to `work`):
    llama.cpp must load the split by its first part and give bitwise the unsplit file's logits
    and tokens, which stay the entry's. Returns the unsplit file's new path."""
    import numpy as np
    prefix = path.name.removesuffix(".gguf")
    argv = [llama.bin / "llama-gguf-split", "--split", "--split-max-tensors", max_tensors, path.name, prefix]
    run(argv, path.parent, "llama-gguf-split")
    parts = sorted(path.parent.glob(f"{prefix}-0*-of-*.gguf"))
    runs = [llama.logits(parts[0], p["prompt_ids"]) for p in prompts]
    identical = all(np.array_equal(r[0], np.fromfile(path.parent / entry["logits"]["file"], dtype="<f4").reshape(
        len(prompts), -1)[i]) and r[1] == entry["cases"][i]["greedy_tokens"] for i, r in enumerate(runs))
    assert identical, f"{parts[0].name}: llama.cpp's logits differ from the unsplit file's"
    kept = work / path.name
    shutil.move(path, kept)
    entry["split_of"] = {"file": path.name, "committed": False, "bytes": entry["bytes"], "sha256": entry["sha256"]}
    entry["file"], entry["bytes"] = parts[0].name, sum(p.stat().st_size for p in parts)
    entry.pop("sha256")
    entry["parts"] = [{"file": p.name, "bytes": p.stat().st_size, "sha256": sha256(p), "tensors": len(census(p)[1])}
                      for p in parts]
    entry["split_command"] = shown(argv, work, llama.bin)
    entry["split_logits_and_tokens_identical_to_unsplit"] = identical
    return kept


def reproducibility(llama: Llama, work: Path, out_dir: Path, produced: dict) -> dict:
    """Reruns llama-imatrix and every llama-quantize in scratch directories (same relative names),
    once with the same thread count and once with 2 threads, and compares bytes."""
    result = {}
    for label, threads in (("second_run_same_threads", 1), ("two_threads", 2)):
        scratch = work / f"repro-{label}"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        shutil.copy(out_dir / "imatrix-corpus.txt", scratch)
        imatrix_equal, files_equal, differing = {}, 0, []
        for ckpt in checkpoints():
            f32 = work / f"{ckpt.name}-F32.gguf"
            name = f"{ckpt.name}.imatrix.gguf"
            imatrix(llama, f32, scratch, name, threads)
            imatrix_equal[ckpt.name] = sha256(scratch / name) == sha256(out_dir / name)
            # Quantise from the committed imatrix, so that quantisation is judged on its own.
            shutil.copy(out_dir / name, scratch / name)
            for mix in ckpt.mixes:
                if (ckpt.name, mix.name) not in produced:
                    continue
                target = f"{ckpt.name}-{mix.name}.gguf"
                _, out = quantize(llama, f32, target, mix, name, scratch, threads)
                assert out.returncode == 0, out.stderr[-2000:]
                if sha256(scratch / target) == sha256(produced[(ckpt.name, mix.name)]):
                    files_equal += 1
                else:
                    differing.append(target)
                (scratch / target).unlink()
        result[label] = {"threads": threads, "imatrix_bit_identical": imatrix_equal,
                         "quantized_files_bit_identical": files_equal, "quantized_files_differing": differing}
        shutil.rmtree(scratch)
    result["note"] = ("quantisation is judged from the committed imatrix; llama-imatrix runs the model with "
                      "llama.cpp's CPU kernels (GGML_NATIVE), so on another CPU its floats, and the IQ files made "
                      "from a new imatrix, may differ")
    return result


def to_json(value, indent: str = "") -> str:
    """JSON with objects one key per line and arrays without objects inside on one line."""
    inner = indent + " "
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {to_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        return "[\n" + ",\n".join(inner + to_json(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value, ensure_ascii=False)


def refusal(log: str) -> str:
    lines = [l.strip() for l in log.splitlines() if l.strip()]
    errors = [l for l in lines if re.search(r"error|failed|please|requires|must|invalid", l, re.I)]
    return " | ".join((errors or lines)[-3:])


def checkpoint_class(directory: Path) -> str:
    return json.loads((directory / "config.json").read_text())["architectures"][0]


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def gguf_version() -> str:
    from importlib.metadata import version
    return version("gguf")


if __name__ == "__main__":
    sys.exit(main())
