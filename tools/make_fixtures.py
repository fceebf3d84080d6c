#!/usr/bin/env python3
"""Writes Jindou's test fixtures: tiny MoE checkpoints saved by transformers itself, and
golden outputs computed by transformers on them.

    python3 -m venv /work/venv
    /work/venv/bin/pip install torch transformers safetensors numpy
    /work/venv/bin/python tools/make_fixtures.py            # → Tests/Fixtures
    /work/venv/bin/python tools/make_fixtures.py --unseen /tmp/unseen --seed 1234

Each fixture directory holds what `save_pretrained` wrote (config.json, safetensors,
maybe an index and generation_config.json) plus `golden.json` (metadata, prompts, greedy
tokens, gaps) and `golden.safetensors` (logits and router captures). The Swift tests read
only these files; they need no Python.

Tiny random models with the default init (std 0.02) have near-tied logits and routers,
which makes goldens fragile, so weights are re-initialised with larger scales and every
golden records its smallest top-1/top-2 logit gap and routing margin.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass, field

import torch
import transformers
from safetensors.torch import save_file
from transformers import (AutoModelForCausalLM, Glm4MoeConfig, Glm4MoeForCausalLM, Qwen3MoeConfig,
                          Qwen3MoeForCausalLM)

import fixture_text

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

TINY = dict(vocab_size=320, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            max_position_embeddings=256, intermediate_size=96, moe_intermediate_size=32)


@dataclass
class Spec:
    name: str
    architecture: str                 # "qwen3_moe" | "glm4_moe"
    seed: int
    config: dict
    dtype: torch.dtype = torch.float32
    max_shard_size: str | None = None  # e.g. "40KB" → sharded with an index
    legacy_config: bool = False        # rewrite config.json in the transformers 4.x style
    extra_config: dict = field(default_factory=dict)
    k_overrides: tuple = ()
    auto_thresholds: tuple = (0.6,)


def fixture_specs(seed_offset: int = 0, unseen: bool = False) -> list[Spec]:
    """The committed fixtures, or (unseen=True) other sizes/seeds/layouts for ad-hoc checks."""
    s = seed_offset
    if unseen:
        wide = dict(TINY, hidden_size=96, num_attention_heads=6, num_key_value_heads=3, vocab_size=400,
                    moe_intermediate_size=48)
        return [
            Spec("unseen-qwen3-moe", "qwen3_moe", 101 + s,
                 dict(wide, num_hidden_layers=3, num_experts=16, num_experts_per_tok=4, norm_topk_prob=True,
                      decoder_sparse_step=1, mlp_only_layers=[0], tie_word_embeddings=False),
                 max_shard_size="100KB", k_overrides=(2, 6), auto_thresholds=(0.7,)),
            Spec("unseen-glm4-moe", "glm4_moe", 202 + s,
                 dict(wide, num_hidden_layers=3, first_k_dense_replace=1, n_routed_experts=16,
                      num_experts_per_tok=4, n_group=4, topk_group=2, n_shared_experts=2,
                      routed_scaling_factor=1.8, norm_topk_prob=True, use_qk_norm=False, attention_bias=True),
                 legacy_config=True, k_overrides=(2, 8), auto_thresholds=(0.7,)),
            Spec("unseen-qwen3-moe-bf16", "qwen3_moe", 303 + s,
                 dict(TINY, num_hidden_layers=2, num_experts=8, num_experts_per_tok=2, norm_topk_prob=False),
                 dtype=torch.bfloat16, k_overrides=(3,), auto_thresholds=(0.6,)),
        ]
    return [
        Spec("qwen3-moe-tiny", "qwen3_moe", 1 + s,
             dict(TINY, num_hidden_layers=4, num_experts=8, num_experts_per_tok=2, norm_topk_prob=False,
                  decoder_sparse_step=1, mlp_only_layers=[1], tie_word_embeddings=False),
             k_overrides=(1, 4, 8), auto_thresholds=(0.6, 0.9)),
        Spec("qwen3-moe-tiny-sharded", "qwen3_moe", 2 + s,
             dict(TINY, num_hidden_layers=3, num_experts=8, num_experts_per_tok=2, norm_topk_prob=True,
                  tie_word_embeddings=True),
             max_shard_size="60KB", legacy_config=True, k_overrides=(1, 4, 8)),
        Spec("glm4-moe-tiny", "glm4_moe", 3 + s,
             dict(TINY, num_hidden_layers=3, first_k_dense_replace=1, n_routed_experts=8, num_experts_per_tok=2,
                  n_group=2, topk_group=1, n_shared_experts=1, routed_scaling_factor=2.5, norm_topk_prob=True,
                  use_qk_norm=True, attention_bias=False, partial_rotary_factor=0.5),
             k_overrides=(1, 3, 4)),
        Spec("glm4-moe-tiny-legacy", "glm4_moe", 4 + s,
             dict(TINY, num_hidden_layers=2, first_k_dense_replace=1, n_routed_experts=8, num_experts_per_tok=3,
                  n_group=1, topk_group=1, n_shared_experts=1, routed_scaling_factor=1.0, norm_topk_prob=True,
                  use_qk_norm=False, attention_bias=True, partial_rotary_factor=0.5),
             max_shard_size="60KB", legacy_config=True, extra_config={"num_nextn_predict_layers": 1},
             k_overrides=(1, 5)),
        Spec("qwen3-moe-tiny-bf16", "qwen3_moe", 5 + s,
             dict(TINY, num_hidden_layers=4, num_experts=8, num_experts_per_tok=2, norm_topk_prob=False,
                  decoder_sparse_step=1, mlp_only_layers=[1]),
             dtype=torch.bfloat16, k_overrides=(4,)),
    ]


# ---------------------------------------------------------------------------------------
# Models

def build_model(spec: Spec):
    torch.manual_seed(spec.seed)
    if spec.architecture == "qwen3_moe":
        config = Qwen3MoeConfig(**spec.config, attn_implementation="eager")
        model = Qwen3MoeForCausalLM(config)
    else:
        config_args = dict(spec.config)
        partial = config_args.pop("partial_rotary_factor", 0.5)
        config = Glm4MoeConfig(**config_args, attn_implementation="eager",
                               rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                "partial_rotary_factor": partial})
        model = Glm4MoeForCausalLM(config)
    reinitialise(model)
    return model.eval()


@torch.no_grad()
def reinitialise(model):
    """Larger-than-default weights so logits and routers are far from ties."""
    hidden = model.config.hidden_size
    for name, p in model.named_parameters():
        if name.endswith("norm.weight") or "layernorm" in name:
            p.copy_(1 + 0.1 * torch.randn_like(p))
        elif "embed_tokens" in name:
            p.normal_(0, 1.0)
        elif name.endswith("mlp.gate.weight"):
            p.normal_(0, 2.0 / math.sqrt(hidden))
        elif name.endswith(".bias"):
            p.normal_(0, 0.1)
        elif p.dim() >= 2:
            fan_in = p.shape[-1]
            p.normal_(0, 1.0 / math.sqrt(fan_in))
        else:
            p.normal_(0, 0.1)
    for name, b in model.named_buffers():
        if name.endswith("e_score_correction_bias"):
            b.normal_(0, 0.1)


def routers(model):
    return [layer.mlp.gate for layer in model.model.layers if hasattr(layer.mlp, "gate")]


def set_top_k(model, k: int):
    """transformers caches top_k on each router at construction: set it there too."""
    model.config.num_experts_per_tok = k
    for r in routers(model):
        r.top_k = k


# ---------------------------------------------------------------------------------------
# Jindou's `auto` experts-per-token rule, on top of transformers' routers

def selection(router, hidden):
    """(raw scores, selection scores after bias and group mask) exactly as the router computes them."""
    hidden = hidden.reshape(-1, router.hidden_dim)
    if hasattr(router, "e_score_correction_bias"):  # GLM4 / DeepSeek-V3 style
        logits = torch.nn.functional.linear(hidden.type(torch.float32), router.weight.type(torch.float32))
        scores = logits.sigmoid()
        choice = scores + router.e_score_correction_bias
        n, g = router.num_experts, router.num_group
        group_scores = choice.view(-1, g, n // g).topk(2, dim=-1)[0].sum(dim=-1)
        group_idx = torch.topk(group_scores, k=router.topk_group, dim=-1, sorted=False)[1]
        group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
        score_mask = group_mask.unsqueeze(-1).expand(-1, g, n // g).reshape(-1, n)
        choice = choice.masked_fill(~score_mask.bool(), float("-inf"))
        return logits, scores, choice
    logits = torch.nn.functional.linear(hidden, router.weight)
    scores = torch.nn.functional.softmax(logits, dtype=torch.float, dim=-1)
    return logits, scores, scores


def auto_forward(router, threshold: float, kmax: int):
    """A router forward implementing `auto`: of the top-Kmax experts in descending selection
    order, keep the shortest prefix whose raw scores reach `threshold` of their total."""
    glm = hasattr(router, "e_score_correction_bias")

    def forward(hidden_states):
        logits, scores, choice = selection(router, hidden_states)
        # Descending selection score, ties to the lower index (stable sort of the negation).
        order = torch.sort(-choice, dim=-1, stable=True)[1][:, :kmax]
        raw = scores.gather(1, order)
        cumulative = raw.cumsum(-1)
        total = cumulative[:, -1:]
        keep = (cumulative >= threshold * total).float().argmax(dim=-1) + 1  # first index reaching it
        mask = torch.arange(kmax).unsqueeze(0) < keep.unsqueeze(1)
        weights = raw * mask
        if router.norm_topk_prob:
            denominator = weights.sum(dim=-1, keepdim=True) + (1e-20 if glm else 0.0)
            weights = weights / denominator
        if glm:
            weights = weights * router.routed_scaling_factor
        # Dropped experts keep weight 0 (0 × finite = 0), so the experts module ignores them.
        return logits, weights.to(logits.dtype if not glm else torch.float32), order

    return forward


class Patch:
    """Temporarily replaces every router's forward (auto) and/or top_k (fixed K)."""

    def __init__(self, model, k=None, auto=None):
        self.model, self.k, self.auto = model, k, auto
        self.saved_k = model.config.num_experts_per_tok

    def __enter__(self):
        if self.k is not None:
            set_top_k(self.model, self.k)
        if self.auto is not None:
            for r in routers(self.model):
                r.forward = auto_forward(r, self.auto, self.saved_k)
        return self

    def __exit__(self, *exc):
        set_top_k(self.model, self.saved_k)
        for r in routers(self.model):
            if "forward" in r.__dict__:
                del r.forward


# ---------------------------------------------------------------------------------------
# Goldens

def top_gap(logits: torch.Tensor) -> float:
    top2 = logits.float().topk(2, dim=-1)[0]
    return float((top2[..., 0] - top2[..., 1]).min())


class RouterRecorder:
    """Forward hooks on every MoE gate: inputs, outputs and routing margins."""

    def __init__(self, model, k_effective):
        self.model, self.k = model, k_effective
        self.captures, self.margins, self.handles = [], [], []

    def __enter__(self):
        for layer_index, layer in enumerate(self.model.model.layers):
            if hasattr(layer.mlp, "gate"):
                self.handles.append(layer.mlp.gate.register_forward_hook(self.hook(layer_index)))
        return self

    def hook(self, layer_index):
        def record(module, inputs, outputs):
            hidden = inputs[0].reshape(-1, module.hidden_dim)
            _, weights, indices = outputs
            self.captures.append((layer_index, hidden.detach().float().clone(), indices.detach().clone(),
                                  weights.detach().float().clone()))
            _, _, choice = selection(module, hidden)
            ordered = choice.float().sort(dim=-1, descending=True)[0]
            k = self.k
            if k < ordered.shape[-1]:
                gap = ordered[:, k - 1] - ordered[:, k]
                gap = gap[torch.isfinite(gap)]
                if gap.numel():
                    self.margins.append(float(gap.min()))
        return record

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


@torch.no_grad()
def greedy(model, prompt, n):
    """Manual greedy loop with a cache: logits each token was chosen from, and the tokens."""
    ids = torch.tensor([prompt])
    out = model(ids, use_cache=True)
    prefill = out.logits[0].float().clone()
    cache = out.past_key_values
    step_logits, tokens = [], []
    logits = out.logits[0, -1]
    for _ in range(n):
        step_logits.append(logits.float().clone())
        token = int(logits.float().argmax())
        tokens.append(token)
        out = model(torch.tensor([[token]]), past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        logits = out.logits[0, -1]
    return prefill, torch.stack(step_logits), tokens


def sorted_capture(indices, weights, width):
    """Rows sorted by expert index; auto rows drop weight-0 experts and pad with -1 / 0."""
    rows_i, rows_w = [], []
    for i_row, w_row in zip(indices.tolist(), weights.tolist()):
        pairs = sorted((i, w) for i, w in zip(i_row, w_row) if w != 0.0)
        pairs += [(-1, 0.0)] * (width - len(pairs))
        rows_i.append([p[0] for p in pairs])
        rows_w.append([p[1] for p in pairs])
    return torch.tensor(rows_i, dtype=torch.int64), torch.tensor(rows_w, dtype=torch.float32)


def prompts_for(spec: Spec, vocab: int):
    g = torch.Generator().manual_seed(spec.seed * 7919)
    def prompt(n):
        return torch.randint(0, vocab, (n,), generator=g).tolist()
    return prompt(5), prompt(9), prompt(40), prompt(7)


def make_goldens(model, spec: Spec, name: str, out_dir: str, stem: str):
    vocab = model.config.vocab_size
    kmax = model.config.num_experts_per_tok
    short, medium, long, other = prompts_for(spec, vocab)
    cases = [("default-short", short, None, None, 8), ("default-medium", medium, None, None, 8),
             ("default-long", long, None, None, 8)]
    cases += [(f"k{k}", other, k, None, 6) for k in spec.k_overrides]
    cases += [(f"auto{t}", other, "auto", t, 6) for t in spec.auto_thresholds]

    tensors, case_meta = {}, []
    for index, (case_name, prompt, k, threshold, n) in enumerate(cases):
        k_effective = k if isinstance(k, int) else kmax
        with Patch(model, k=k if isinstance(k, int) else None, auto=threshold if k == "auto" else None):
            with RouterRecorder(model, k_effective) as recorder:
                prefill, steps, tokens = greedy(model, prompt, n)
        tensors[f"case{index}.prefill_logits"] = prefill.contiguous()
        tensors[f"case{index}.generated_logits"] = steps.contiguous()
        case_meta.append({
            "index": index, "name": case_name, "prompt_ids": prompt,
            "experts_per_token": k if k is not None else kmax,
            "auto_threshold": threshold, "max_new_tokens": n, "greedy_new_tokens": tokens,
            "min_top_gap": min(top_gap(prefill), top_gap(steps)),
            "min_routing_margin": min(recorder.margins) if recorder.margins else None,
        })

    # Router captures on the 9-token prompt's prefill: default K, one override, auto.
    router_meta = []
    router_cases = [(None, None)] + ([(spec.k_overrides[-1], None)] if spec.k_overrides else []) + \
                   [("auto", spec.auto_thresholds[0])]
    for k, threshold in router_cases:
        k_effective = k if isinstance(k, int) else kmax
        with Patch(model, k=k if isinstance(k, int) else None, auto=threshold if k == "auto" else None):
            with RouterRecorder(model, k_effective) as recorder, torch.no_grad():
                model(torch.tensor([medium]))
        for layer_index, hidden, indices, weights in recorder.captures:
            j = len(router_meta)
            width = indices.shape[1]
            if k == "auto":
                idx, w = sorted_capture(indices, weights, width)
            else:
                order = indices.sort(dim=-1)
                idx, w = order.values, weights.gather(1, order.indices)
            tensors[f"router{j}.hidden"] = hidden.contiguous()
            tensors[f"router{j}.indices"] = idx.contiguous()
            tensors[f"router{j}.weights"] = w.float().contiguous()
            router_meta.append({"index": j, "layer": layer_index,
                                "experts_per_token": k if k is not None else kmax,
                                "auto_threshold": threshold, "tokens": hidden.shape[0]})

    meta = {
        "generator": "tools/make_fixtures.py",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "checkpoint": name,
        "architecture": model.config.architectures[0] if model.config.architectures else type(model).__name__,
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "seed": spec.seed,
        "eos_token_id": None,
        "cases": case_meta,
        "router": router_meta,
    }
    save_file(tensors, os.path.join(out_dir, f"{stem}.safetensors"))
    with open(os.path.join(out_dir, f"{stem}.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta, tensors


# ---------------------------------------------------------------------------------------
# Checkpoints

def to_legacy_config(path: str):
    """Rewrites a transformers-5 config.json in the style Hub checkpoints written by 4.x use."""
    with open(path) as f:
        config = json.load(f)
    rope = config.pop("rope_parameters", None) or {}
    config["rope_theta"] = rope.get("rope_theta", 10000.0)
    if "partial_rotary_factor" in rope:
        config["partial_rotary_factor"] = rope["partial_rotary_factor"]
    config["rope_scaling"] = None
    if "num_local_experts" in config and config.get("model_type") == "qwen3_moe":
        config["num_experts"] = config.pop("num_local_experts")
    if "dtype" in config:
        config["torch_dtype"] = config.pop("dtype")
    with open(path, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)


TEMPLATES: dict[str, str] = {}


@torch.no_grad()
def write_fixture(spec: Spec, root: str) -> dict:
    out_dir = os.path.join(root, spec.name)
    shutil.rmtree(out_dir, ignore_errors=True)
    model = build_model(spec).to(spec.dtype)
    kwargs = {"max_shard_size": spec.max_shard_size} if spec.max_shard_size else {}
    model.save_pretrained(out_dir, **kwargs)
    # A tokenizer and the family's real chat template, for serving tests.
    family = "qwen3" if spec.architecture == "qwen3_moe" else "glm4"
    fixture_text.write_model_tokenizer(out_dir, family, model.config.vocab_size, TEMPLATES[family])
    config_path = os.path.join(out_dir, "config.json")
    if spec.legacy_config:
        to_legacy_config(config_path)
    if spec.extra_config:
        with open(config_path) as f:
            config = json.load(f)
        config.update(spec.extra_config)
        with open(config_path, "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)

    # Goldens come from the checkpoint as transformers reloads it from disk, and the reload
    # must equal the in-memory model (proves the saved files, and the legacy config, are faithful).
    reloaded = AutoModelForCausalLM.from_pretrained(out_dir, attn_implementation="eager", dtype=spec.dtype).eval()
    probe = torch.tensor([prompts_for(spec, model.config.vocab_size)[1]])
    if spec.dtype == torch.float32:
        # (A bf16 model converted in memory also rounds its rotary buffers to bf16; the
        # reloaded one keeps them in fp32 like any user's would, so only fp32 compares exactly.)
        assert torch.equal(model(probe).logits, reloaded(probe).logits), f"{spec.name}: reloaded model differs"
    check_auto_reference(reloaded)

    meta, tensors = make_goldens(reloaded, spec, spec.name, out_dir, "golden")
    if spec.dtype == torch.bfloat16:
        # Reference in fp32 over the same bf16 weights: what Jindou computes (exact widening,
        # fp32 arithmetic). The bf16 run above is what a user of transformers would see.
        upcast = AutoModelForCausalLM.from_pretrained(out_dir, attn_implementation="eager",
                                                      dtype=torch.float32).eval()
        ref_meta, ref_tensors = make_goldens(upcast, spec, spec.name, out_dir, "golden-f32ref")
        # bf16 logits tie often (8-bit mantissa); separation is judged on the fp32 reference.
        meta["f32ref_min_top_gap"] = min(c["min_top_gap"] for c in ref_meta["cases"])
        meta["f32ref_min_routing_margin"] = min(
            (c["min_routing_margin"] for c in ref_meta["cases"] if c["min_routing_margin"] is not None), default=None)
        meta["max_abs_logit_diff_vs_f32ref"] = max(
            float((tensors[k] - ref_tensors[k]).abs().max())
            for k in tensors if k.startswith("case") and tensors[k].shape == ref_tensors[k].shape)
    if spec.architecture == "glm4_moe":
        meta["bias_changed_selections"] = count_bias_changes(reloaded, spec)
    with open(os.path.join(out_dir, "golden.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


@torch.no_grad()
def check_auto_reference(model):
    """The auto patch with threshold 1.0 must reproduce transformers' own routers."""
    prompt = torch.arange(12).unsqueeze(0) % model.config.vocab_size
    expected = model(prompt).logits
    with Patch(model, auto=1.0):
        actual = model(prompt).logits
    assert torch.allclose(expected, actual, atol=1e-5, rtol=0), "auto(1.0) differs from the configured top-k"


@torch.no_grad()
def count_bias_changes(model, spec) -> int:
    """How many (token, layer) selections e_score_correction_bias changes on the medium prompt."""
    changed = 0
    prompt = prompts_for(spec, model.config.vocab_size)[1]
    recorder = RouterRecorder(model, model.config.num_experts_per_tok)
    with recorder:
        model(torch.tensor([prompt]))
    for layer_index, hidden, indices, _ in recorder.captures:
        gate = model.model.layers[layer_index].mlp.gate
        saved = gate.e_score_correction_bias.clone()
        gate.e_score_correction_bias.zero_()
        _, _, unbiased = gate(hidden)
        gate.e_score_correction_bias.copy_(saved)
        for a, b in zip(indices.sort(-1).values.tolist(), unbiased.sort(-1).values.tolist()):
            changed += a != b
    return changed


def separation(meta) -> tuple[float, float]:
    """(min top-1/top-2 logit gap, min routing margin) of a golden set."""
    if "f32ref_min_top_gap" in meta:
        return meta["f32ref_min_top_gap"], meta["f32ref_min_routing_margin"] or float("inf")
    gap = min(c["min_top_gap"] for c in meta["cases"])
    margins = [c["min_routing_margin"] for c in meta["cases"] if c["min_routing_margin"] is not None]
    return gap, min(margins) if margins else float("inf")


def well_separated(meta) -> bool:
    gap, margin = separation(meta)
    return gap >= 1e-3 and margin >= 1e-4


def write_separated_fixture(spec: Spec, root: str, attempts: int = 12) -> dict:
    """Tries seeds spec.seed, spec.seed + 1000, … until the goldens are well separated
    (top-1/top-2 gap ≥ 1e-3, routing margin ≥ 1e-4), keeping the last attempt otherwise."""
    base = spec.seed
    for attempt in range(attempts):
        spec.seed = base + 1000 * attempt
        meta = write_fixture(spec, root)
        if well_separated(meta):
            break
    return meta


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures"))
    parser.add_argument("--unseen", metavar="DIR", help="write the unseen cross-check checkpoints here instead")
    parser.add_argument("--seed", type=int, default=0, help="offset added to every fixture seed")
    args = parser.parse_args()
    root = os.path.abspath(args.unseen or args.out)
    os.makedirs(root, exist_ok=True)
    assets = fixture_text.fetch_llama_cpp_assets(os.path.join(os.environ.get("TMPDIR", "/tmp"), "jindou-llama-cpp-assets"))
    for family in ("qwen3", "glm4"):
        with open(assets[family]) as f:
            TEMPLATES[family] = f.read()
    specs = fixture_specs(args.seed, unseen=bool(args.unseen))
    print(f"{'fixture':28} {'files':>5} {'size':>9} {'min gap':>9} {'min margin':>10} {'bias Δ':>6}")
    for spec in specs:
        meta = write_separated_fixture(spec, root)
        directory = os.path.join(root, spec.name)
        files = os.listdir(directory)
        size = sum(os.path.getsize(os.path.join(directory, f)) for f in files)
        gap, margin = separation(meta)
        print(f"{spec.name:28} {len(files):5} {size / 1024:8.0f}K {gap:9.2e} {margin:10.2e} "
              f"{meta.get('bias_changed_selections', '-'):>6}")
        if gap < 1e-3 or margin < 1e-4:
            print(f"  warning: {spec.name} has small gaps (top gap {gap:.2e}, routing margin {margin:.2e})",
                  file=sys.stderr)
        if "max_abs_logit_diff_vs_f32ref" in meta:
            print(f"  bf16 run vs f32-upcast run: max |Δlogit| {meta['max_abs_logit_diff_vs_f32ref']:.3e}")
    if not args.unseen:
        fixture_text.write_tokenizer_fixtures(root)
        fixture_text.write_template_goldens(root, TEMPLATES, {"qwen3": os.path.join(root, "qwen3-moe-tiny"),
                                                              "glm4": os.path.join(root, "glm4-moe-tiny")})


if __name__ == "__main__":
    main()
