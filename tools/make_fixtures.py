#!/usr/bin/env python3
"""Writes Jindou's model fixtures: tiny MoE checkpoints saved by transformers itself, and
golden outputs computed by transformers on them.

    python3 -m venv /work/venv
    /work/venv/bin/pip install torch transformers safetensors tokenizers numpy
    /work/venv/bin/python tools/make_fixtures.py                     # → Tests/Fixtures
    /work/venv/bin/python tools/make_fixtures.py --unseen /tmp/unseen --seed 7
    /work/venv/bin/python tools/make_fixtures.py --out /tmp/f --only deepseek-v3-tiny,kimi-k2-tiny

Each fixture directory holds what `save_pretrained` wrote (config.json, safetensors, an
index when sharded, generation_config.json), a tiny tokenizer with the family's real chat
template (fixture_text.py; Qwen and GLM only), and `golden.json` + `golden.safetensors`
(prompts, greedy tokens, logits, router captures, separation margins). DeepSeek-V3-family
checkpoints are post-processed where real ones differ from what transformers writes: an
MTP layer's tensors appended, `model_type: kimi_k2`, or FP8 weights with block scales.
The Qwen3-VL-MoE fixture (checkpoint, processor files, images, preprocessing and model
goldens) is written by fixture_vision.py with this module's helpers.
The Swift tests read only these files; they need no Python. See tools/README.md for what each fixture covers.

Reference choices, all deliberate:
- eager attention AND eager experts. transformers 5 defaults MoE experts to `grouped_mm`
  where torch provides it; the eager loop is the implementation the modeling file spells
  out, exists on every torch version, and sums each token's experts in ascending expert
  index (the order Jindou sums in; grouped_mm sums in routing order). The generator
  measures `grouped_mm` against it and records the difference (rounding-level in fp32).
- goldens come from the checkpoint as `from_pretrained` reloads it, never from the
  in-memory model, and the reload must equal the in-memory model bit for bit.
- tiny random models at the default init (std 0.02) have near-tied logits and routers, so
  weights are re-initialised at larger scales and seeds are searched until every golden
  is well separated; the margins reached are recorded so tests can reason about them.
- FP8 checkpoints: the reference is transformers in fp32 on the weights dequantised the
  DeepSeek way (fp8 value × its block's scale_inv, partial edge blocks included), which
  is what Jindou computes; transformers' own FP8 loader is not used (it needs a GPU or
  accelerate, and assumes the scale grid divides the weight).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file
from transformers import (AfmoeConfig, AfmoeForCausalLM, AutoModelForCausalLM, DeepseekV3Config, DeepseekV3ForCausalLM,
                          DeepseekV32Config, DeepseekV32ForCausalLM, Dots1Config,
                          Ernie4_5_MoeConfig, Ernie4_5_MoeForCausalLM, ExaoneMoeConfig, ExaoneMoeForCausalLM,
                          KimiLinearConfig, KimiLinearForCausalLM, BailingHybridConfig, BailingHybridForCausalLM,
                          Dots1ForCausalLM, Glm4MoeConfig, Glm4MoeForCausalLM, Glm4MoeLiteConfig,
                          Glm4MoeLiteForCausalLM, GlmMoeDsaConfig, GlmMoeDsaForCausalLM, HunYuanMoEV1Config,
                          LongcatFlashConfig, LongcatFlashForCausalLM,
                          GptOssConfig, GptOssForCausalLM, HunYuanMoEV1ForCausalLM, MiniMaxM2Config,
                          MiniMaxM2ForCausalLM,
                          Qwen3MoeConfig, Qwen3MoeForCausalLM, Qwen3NextConfig, Qwen3NextForCausalLM)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_text  # noqa: E402  (tokenizers and chat templates; shares this generator's run)
import fixture_vision  # noqa: E402  (the Qwen3-VL-MoE fixture; imports this module for its helpers)
import fixture_kimi_vision  # noqa: E402  (the Kimi-K2.5 fixture; the same)

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# Separation the seed search aims for (recorded, warned about, never fatal).
MIN_TOP_GAP = 1e-3
MIN_ROUTING_MARGIN = 1e-4
SEED_ATTEMPTS = 12

TINY = dict(vocab_size=320, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            max_position_embeddings=256, intermediate_size=96, moe_intermediate_size=32)
# MiniMax-M2: every layer MoE, experts of `intermediate_size`.
MINIMAX_TINY = dict(vocab_size=320, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                    max_position_embeddings=256, intermediate_size=32, num_hidden_layers=3, num_local_experts=8,
                    num_experts_per_tok=2, rotary_dim=8, rope_theta=5000000.0, tie_word_embeddings=False,
                    bos_token_id=None, eos_token_id=None)
# Keys of MiniMax-M2's released config.json that transformers ignores (Jindou checks them).
MINIMAX_HUB_KEYS = {"use_qk_norm": True, "qk_norm_type": "per_layer", "scoring_func": "sigmoid",
                    "use_routing_bias": True, "shared_intermediate_size": 0, "use_mtp": True, "num_mtp_modules": 3}
# gpt-oss: 4 layers alternating sliding (window 5: every prompt but the shortest exceeds
# it) and full, YaRN past original_max_position_embeddings 16 (the 40-token prompt crosses
# it), a swiglu_limit of 1 so both clamps act on many activations.
GPT_OSS_TINY = dict(vocab_size=320, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                    max_position_embeddings=64, intermediate_size=32, num_hidden_layers=4, num_local_experts=8,
                    num_experts_per_tok=2, sliding_window=5, swiglu_limit=1.0, tie_word_embeddings=False,
                    bos_token_id=None, eos_token_id=None, pad_token_id=None,
                    rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 4.0, "beta_fast": 32.0,
                                     "beta_slow": 1.0, "truncate": False, "original_max_position_embeddings": 16})
# Keys of gpt-oss's released config.json that transformers ignores.
GPT_OSS_HUB_KEYS = {"experts_per_token": 2, "initial_context_length": 16}
# Keys of Hunyuan-A13B's released config.json that transformers ignores (Jindou checks them).
HUNYUAN_HUB_KEYS = {"use_qk_norm": True, "use_mixed_mlp_moe": True, "use_cla": False, "cla_share_factor": 2,
                    "num_shared_expert": [1, 1, 1], "moe_intermediate_size": [32, 32, 32]}
IMPLEMENTATIONS = dict(attn_implementation="eager", experts_implementation="eager")
# DeepSeek-V3 (MLA): 4 heads, q/k head 16 + 8 rotary, v head 16, latent KV rank 32.
DS_TINY = dict(vocab_size=320, hidden_size=64, num_attention_heads=4, num_key_value_heads=4,
               max_position_embeddings=256, intermediate_size=96, moe_intermediate_size=32, kv_lora_rank=32,
               qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16)
# YaRN with mscale != mscale_all_dim, so that both the cos/sin attention factor
# (mscale(f, 1.0) / mscale(f, 0.707)) and the softmax-scale correction (mscale(f, 0.707)²)
# differ from 1 (DeepSeek-V3 itself has mscale = mscale_all_dim = 1: factor 1, correction ≠ 1).
DS_YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64,
           "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 0.707}
# Keys the DeepSeek-V3 / Kimi-K2 Hub configs carry that transformers does not write.
DS_HUB_KEYS = {"topk_method": "noaux_tc", "scoring_func": "sigmoid", "moe_layer_freq": 1}
FP8_MAX = 448.0  # largest finite float8_e4m3fn


@dataclass
class Spec:
    name: str
    architecture: str                  # "qwen3_moe" | "glm4_moe" | "deepseek_v3" | "minimax_m2"
    seed: int
    config: dict
    dtype: torch.dtype = torch.float32
    max_shard_size: str | None = None   # e.g. "60KB" → sharded with model.safetensors.index.json
    min_shards: int = 1
    legacy_config: bool = False         # rewrite config.json in the transformers 4.x (Hub) style
    extra_config: dict = field(default_factory=dict)
    k_overrides: tuple = ()
    auto_thresholds: tuple = (0.6,)
    router_k: int | None = None         # the override K captured in the router goldens
    long_prompt: int | None = None      # an extra configured-K case with a prompt this long
    mtp_layers: int = 0                 # DeepSeek: write this many MTP layers' tensors after the last layer
    qwen_mtp: bool = False              # Qwen3-Next: write an `mtp.*` layer (transformers drops it; the Hub's have it)
    fp8_block: int | None = None        # DeepSeek: store Linear weights as FP8 with [B, B] block scales
    mxfp4: bool = False                 # gpt-oss: routed experts as MXFP4 _blocks/_scales (random bytes)


def fixture_specs(seed_offset: int = 0, unseen: bool = False) -> list[Spec]:
    """The committed fixtures, or (unseen=True) other sizes/seeds/layouts for ad-hoc checks."""
    s = seed_offset
    qwen_rope = dict(rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    ds_tiny = dict(DS_TINY, num_hidden_layers=4, first_k_dense_replace=1, q_lora_rank=48, n_routed_experts=16,
                   num_experts_per_tok=4, n_group=4, topk_group=2, n_shared_experts=1, routed_scaling_factor=2.5,
                   norm_topk_prob=True, rope_interleave=True, rope_parameters=DS_YARN, num_mtp_layers=0)
    if unseen:
        wide = dict(TINY, hidden_size=96, num_attention_heads=6, num_key_value_heads=3, vocab_size=400,
                    moe_intermediate_size=48)
        ds_wide = dict(DS_TINY, hidden_size=96, num_attention_heads=6, num_key_value_heads=6, vocab_size=400,
                       moe_intermediate_size=40, kv_lora_rank=48, qk_nope_head_dim=24, qk_rope_head_dim=16,
                       v_head_dim=20)
        ds_yarn = {"rope_type": "yarn", "rope_theta": 20000.0, "factor": 8.0, "original_max_position_embeddings": 32,
                   "beta_fast": 32, "beta_slow": 1, "mscale": 0.9, "mscale_all_dim": 0.6}
        return [
            Spec("unseen-qwen3-moe", "qwen3_moe", 101 + s,
                 dict(wide, **qwen_rope, num_hidden_layers=3, num_experts=16, num_experts_per_tok=4,
                      norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[0], tie_word_embeddings=False),
                 max_shard_size="100KB", min_shards=3, k_overrides=(2, 6), auto_thresholds=(0.7,), router_k=6),
            Spec("unseen-qwen3-moe-tied", "qwen3_moe", 151 + s,
                 dict(TINY, **qwen_rope, num_hidden_layers=2, num_experts=8, num_experts_per_tok=3,
                      norm_topk_prob=False, tie_word_embeddings=True),
                 legacy_config=True, k_overrides=(2, 5), auto_thresholds=(0.8,), router_k=5),
            Spec("unseen-glm4-moe", "glm4_moe", 202 + s,
                 dict(wide, num_hidden_layers=3, first_k_dense_replace=1, n_routed_experts=16,
                      num_experts_per_tok=4, n_group=4, topk_group=2, n_shared_experts=2,
                      routed_scaling_factor=1.8, norm_topk_prob=True, use_qk_norm=False, attention_bias=True,
                      partial_rotary_factor=0.5),
                 legacy_config=True, max_shard_size="120KB", min_shards=3, k_overrides=(2, 8),
                 auto_thresholds=(0.7,), router_k=8),
            Spec("unseen-qwen3-moe-bf16", "qwen3_moe", 303 + s,
                 dict(TINY, **qwen_rope, num_hidden_layers=2, num_experts=8, num_experts_per_tok=2,
                      norm_topk_prob=False, tie_word_embeddings=False),
                 dtype=torch.bfloat16, k_overrides=(3,), auto_thresholds=(0.6,), router_k=3),
            # q-LoRA + YaRN (Hub-style `rope_scaling: {type: yarn}`), 32 experts in 8 groups, 2 shared, sharded, MTP.
            Spec("unseen-deepseek-v3", "deepseek_v3", 404 + s,
                 dict(ds_wide, num_hidden_layers=3, first_k_dense_replace=1, q_lora_rank=40, n_routed_experts=32,
                      num_experts_per_tok=6, n_group=8, topk_group=3, n_shared_experts=2, routed_scaling_factor=2.0,
                      norm_topk_prob=True, rope_interleave=True, rope_parameters=ds_yarn, num_mtp_layers=1),
                 legacy_config=True, extra_config=DS_HUB_KEYS, max_shard_size="150KB", min_shards=3, mtp_layers=1,
                 k_overrides=(2, 12), auto_thresholds=(0.7,), router_k=12, long_prompt=48),
            # DeepSeek-V3.2 with YaRN, 16 experts in 4 groups, an indexer of 64 heads × 32 choosing 6.
            Spec("unseen-deepseek-v32", "deepseek_v32", 414 + s,
                 dict(ds_wide, num_hidden_layers=3, first_k_dense_replace=1, q_lora_rank=40, n_routed_experts=16,
                      num_experts_per_tok=4, n_group=4, topk_group=2, n_shared_experts=1, routed_scaling_factor=2.0,
                      norm_topk_prob=True, index_n_heads=64, index_head_dim=32, index_topk=6, rope_parameters=ds_yarn),
                 legacy_config=True, k_overrides=(2, 8), router_k=8, long_prompt=48),
            # GLM-5 with YaRN in the Hub (4.x) style, the indexer schedule from index_topk_freq /
            # index_skip_topk_offset (full, full, shared, full), 16 experts, an indexer of 64 × 32 choosing 6.
            Spec("unseen-glm-moe-dsa", "glm_moe_dsa", 424 + s,
                 dict(ds_wide, num_hidden_layers=4, first_k_dense_replace=1, q_lora_rank=40, n_routed_experts=16,
                      num_experts_per_tok=4, n_group=1, topk_group=1, n_shared_experts=1, routed_scaling_factor=2.5,
                      norm_topk_prob=True, index_n_heads=64, index_head_dim=32, index_topk=6, rope_parameters=ds_yarn,
                      index_topk_freq=2, index_skip_topk_offset=2),
                 legacy_config=True, k_overrides=(2, 8), router_k=8, long_prompt=48),
            # LongCat-Flash with YaRN, 3 layers, 16 routed + 8 zero-computation experts, K 6.
            Spec("unseen-longcat-flash", "longcat_flash", 434 + s,
                 dict(vocab_size=400, hidden_size=96, num_layers=3, num_attention_heads=6, kv_lora_rank=48, q_lora_rank=40,
                      qk_rope_head_dim=16, head_dim=16, qk_nope_head_dim=24, v_head_dim=20, ffn_hidden_size=128,
                      expert_ffn_hidden_size=40, n_routed_experts=16, zero_expert_num=8, moe_topk=6, routed_scaling_factor=6.0,
                      max_position_embeddings=256, rope_parameters=ds_yarn),
                 k_overrides=(2, 9), router_k=6, long_prompt=48),
            # FP8 with 64×64 blocks (partial edge blocks everywhere at hidden 96), no q-LoRA, rotate-half rope.
            Spec("unseen-deepseek-v3-fp8", "deepseek_v3", 505 + s,
                 dict(ds_wide, num_hidden_layers=3, first_k_dense_replace=1, q_lora_rank=None, n_routed_experts=16,
                      num_experts_per_tok=4, n_group=4, topk_group=2, n_shared_experts=1, routed_scaling_factor=2.5,
                      norm_topk_prob=True, rope_interleave=False, rope_parameters=ds_yarn, num_mtp_layers=0),
                 fp8_block=64, k_overrides=(2, 8), auto_thresholds=(0.6,), router_k=8),
            Spec("unseen-gpt-oss", "gpt_oss", 909 + s,
                 dict(GPT_OSS_TINY, hidden_size=96, num_attention_heads=6, num_key_value_heads=3, vocab_size=400,
                      intermediate_size=64, num_hidden_layers=3, num_local_experts=16, num_experts_per_tok=4,
                      sliding_window=7, swiglu_limit=2.0, layer_types=["full_attention", "sliding_attention", "full_attention"]),
                 legacy_config=True, k_overrides=(2, 8), auto_thresholds=(0.7,), router_k=8),
            Spec("unseen-gpt-oss-mxfp4", "gpt_oss", 919 + s, dict(GPT_OSS_TINY, hidden_size=96, vocab_size=400),
                 mxfp4=True, k_overrides=(3,), auto_thresholds=(0.7,), router_k=3),
            Spec("unseen-afmoe", "afmoe", 929 + s,
                 dict(vocab_size=400, hidden_size=96, num_attention_heads=6, num_key_value_heads=3, head_dim=16,
                      max_position_embeddings=256, intermediate_size=128, moe_intermediate_size=40, num_hidden_layers=4,
                      num_dense_layers=2, num_experts=16, num_experts_per_tok=4, num_shared_experts=2, route_scale=1.5,
                      global_attn_every_n_layers=4, sliding_window=7, mup_enabled=False, bos_token_id=None,
                      eos_token_id=None, pad_token_id=None, rope_parameters={"rope_type": "default", "rope_theta": 50000.0}),
                 k_overrides=(2, 8), auto_thresholds=(0.7,), router_k=8),
            Spec("unseen-minimax-m2", "minimax_m2", 707 + s,
                 dict(MINIMAX_TINY, hidden_size=96, num_attention_heads=6, num_key_value_heads=3, head_dim=16,
                      vocab_size=400, intermediate_size=40, num_hidden_layers=2, num_local_experts=16,
                      num_experts_per_tok=3, rotary_dim=12, tie_word_embeddings=True),
                 max_shard_size="100KB", min_shards=2, k_overrides=(2, 6), auto_thresholds=(0.7,), router_k=6),
            Spec("unseen-dots1", "dots1", 808 + s,
                 dict(wide, num_hidden_layers=3, first_k_dense_replace=1, n_routed_experts=16, num_experts_per_tok=4,
                      n_group=1, topk_group=1, n_shared_experts=2, routed_scaling_factor=2.5, norm_topk_prob=True,
                      attention_bias=False, sliding_window=None, tie_word_embeddings=False,
                      rope_parameters={"rope_type": "default", "rope_theta": 50000.0}),
                 k_overrides=(2, 8), auto_thresholds=(0.7,), router_k=8),
            Spec("unseen-kimi-k2", "deepseek_v3", 606 + s,
                 dict(ds_wide, num_hidden_layers=3, first_k_dense_replace=1, q_lora_rank=64, n_routed_experts=32,
                      num_experts_per_tok=8, n_group=1, topk_group=1, n_shared_experts=1, routed_scaling_factor=2.827,
                      norm_topk_prob=True, rope_interleave=True,
                      rope_parameters={"rope_type": "default", "rope_theta": 50000.0}, num_mtp_layers=0),
                 legacy_config=True, extra_config={"model_type": "kimi_k2", **DS_HUB_KEYS},
                 k_overrides=(3,), auto_thresholds=(0.8,), router_k=3),
        ]
    qwen_tiny = dict(TINY, **qwen_rope, num_hidden_layers=4, num_experts=8, num_experts_per_tok=2,
                     norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[1], tie_word_embeddings=False)
    return [
        Spec("qwen3-moe-tiny", "qwen3_moe", 1 + s, qwen_tiny,
             k_overrides=(1, 4, 8), auto_thresholds=(0.6, 0.9), router_k=4),
        # Qwen3-Next: Gated DeltaNet layers (0, 1, 3) around one gated full-attention layer (2),
        # zero-centred norms, partial rotary 0.25, a sigmoid-gated shared expert; layer 1 dense.
        # A 66-token prompt: past a DeltaNet chunk (64), so the chunked prefill spans two chunks.
        Spec("qwen3-next-tiny", "qwen3_next", 141 + s,
             dict(TINY, num_hidden_layers=4, num_experts=8, num_experts_per_tok=2, norm_topk_prob=True,
                  shared_expert_intermediate_size=32, decoder_sparse_step=1, mlp_only_layers=[1],
                  layer_types=["linear_attention", "linear_attention", "full_attention", "linear_attention"],
                  linear_conv_kernel_dim=4, linear_key_head_dim=16, linear_value_head_dim=16, linear_num_key_heads=2,
                  linear_num_value_heads=4, tie_word_embeddings=False,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25}),
             k_overrides=(1, 4), long_prompt=66, router_k=4),
        # Qwen3-Next as released: every layer MoE (llama.cpp's `qwen3next` has no dense layers, so
        # this is the fixture tools/fixture_gguf.py converts).
        Spec("qwen3-next-tiny-moe", "qwen3_next", 146 + s,
             dict(TINY, num_hidden_layers=3, num_experts=8, num_experts_per_tok=2, norm_topk_prob=True,
                  shared_expert_intermediate_size=32, decoder_sparse_step=1, mlp_only_layers=[],
                  layer_types=["linear_attention", "linear_attention", "full_attention"],
                  linear_conv_kernel_dim=4, linear_key_head_dim=16, linear_value_head_dim=16, linear_num_key_heads=2,
                  linear_num_value_heads=4, tie_word_embeddings=False,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25}),
             k_overrides=(1, 4), long_prompt=66, router_k=4, qwen_mtp=True),
        # Kimi-Linear: Kimi Delta Attention (per-channel decay, low-rank forget and output gates,
        # sigmoid-gated norm) in layers 0, 2, 3 and MLA without rotary in layer 1; DeepSeek-V3's
        # sigmoid router with a correction bias and a shared expert; layer 0 dense.
        Spec("kimi-linear-tiny", "kimi_linear", 151 + s,
             dict(DS_TINY, num_hidden_layers=4, q_lora_rank=None, num_experts=8, num_experts_per_tok=2, n_group=1,
                  topk_group=1, n_shared_experts=1, routed_scaling_factor=2.446, norm_topk_prob=True,
                  layer_types=["linear_attention", "full_attention", "linear_attention", "linear_attention"],
                  mlp_layer_types=["dense", "sparse", "sparse", "sparse"], linear_head_dim=16, linear_num_heads=4,
                  linear_conv_kernel_dim=4, tie_word_embeddings=False, pad_token_id=None, bos_token_id=None,
                  eos_token_id=None),
             k_overrides=(1, 4), long_prompt=66, router_k=4),
        # Ling-3.0-Flash (bailing_hybrid): KDA with the bounded forget gate (lower bound × σ) and
        # full-rank forget/output gates in layers 0, 1, 3; MLA with interleaved rotary and a
        # sigmoid gate per head in layer 2; DeepSeek-V3's grouped router (2 groups, 1 allowed),
        # a shared expert; layer 0 dense. Hub names (word_embeddings, attention., dense, expert_bias).
        Spec("ling-hybrid-tiny", "bailing_hybrid", 161 + s,
             dict(DS_TINY, num_hidden_layers=4, q_lora_rank=None, num_local_experts=8, num_experts_per_tok=2, n_group=2,
                  topk_group=1, n_shared_experts=1, routed_scaling_factor=2.5, norm_topk_prob=True, first_k_dense_replace=1,
                  layer_types=["linear_attention", "linear_attention", "full_attention", "linear_attention"],
                  head_dim=16, short_conv_kernel_size=4, kda_safe_gate=True, kda_lower_bound=-5.0,
                  rope_theta=10000.0, tie_word_embeddings=False, pad_token_id=None, bos_token_id=None, eos_token_id=None,
                  num_mtp_layers=0),
             k_overrides=(1, 4), long_prompt=66, router_k=4),
        # Ling as llama.cpp's `bailingmoe3` can say it: the full-attention layer where
        # layer_group_size puts it (the converter derives the layer kinds from it), here the last
        # of 4; converted to gguf/ling-hybrid-tiny-group4-f32.gguf.
        Spec("ling-hybrid-tiny-group4", "bailing_hybrid", 166 + s,
             dict(DS_TINY, num_hidden_layers=4, q_lora_rank=None, num_local_experts=8, num_experts_per_tok=2, n_group=2,
                  topk_group=1, n_shared_experts=1, routed_scaling_factor=2.5, norm_topk_prob=True, first_k_dense_replace=1,
                  layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention"], layer_group_size=4,
                  head_dim=16, short_conv_kernel_size=4, kda_safe_gate=True, kda_lower_bound=-5.0,
                  rope_theta=10000.0, tie_word_embeddings=False, pad_token_id=None, bos_token_id=None, eos_token_id=None,
                  num_mtp_layers=0),
             k_overrides=(1, 4), long_prompt=66, router_k=4),
        Spec("qwen3-moe-tiny-sharded", "qwen3_moe", 2 + s,
             dict(TINY, **qwen_rope, num_hidden_layers=3, num_experts=8, num_experts_per_tok=2,
                  norm_topk_prob=True, tie_word_embeddings=True),
             max_shard_size="60KB", min_shards=3, legacy_config=True, k_overrides=(1, 4, 8), router_k=4),
        Spec("glm4-moe-tiny", "glm4_moe", 3 + s,
             dict(TINY, num_hidden_layers=3, first_k_dense_replace=1, n_routed_experts=8, num_experts_per_tok=2,
                  n_group=2, topk_group=1, n_shared_experts=1, routed_scaling_factor=2.5, norm_topk_prob=True,
                  use_qk_norm=True, attention_bias=False, partial_rotary_factor=0.5),
             k_overrides=(1, 3, 4), router_k=3),
        Spec("glm4-moe-tiny-legacy", "glm4_moe", 4 + s,
             dict(TINY, num_hidden_layers=2, first_k_dense_replace=1, n_routed_experts=8, num_experts_per_tok=3,
                  n_group=1, topk_group=1, n_shared_experts=1, routed_scaling_factor=1.0, norm_topk_prob=True,
                  use_qk_norm=False, attention_bias=True, partial_rotary_factor=0.5),
             max_shard_size="60KB", min_shards=3, legacy_config=True,
             extra_config={"num_nextn_predict_layers": 1}, k_overrides=(1, 5), router_k=5),
        Spec("qwen3-moe-tiny-bf16", "qwen3_moe", 5 + s, qwen_tiny, dtype=torch.bfloat16,
             k_overrides=(1, 4, 8), router_k=4),
        # MLA with q-LoRA, interleaved YaRN rope, 16 experts in 4 groups (2 allowed: 8 reachable).
        # The 70-token prompt takes positions past original_max_position_embeddings (64).
        Spec("deepseek-v3-tiny", "deepseek_v3", 6 + s, ds_tiny,
             k_overrides=(1, 3, 8), router_k=3, long_prompt=70),
        # q_proj instead of q-LoRA, rotate-half default rope, 4.x Hub-style config, sharded, and
        # an MTP layer's tensors at layer index num_hidden_layers (transformers ignores them).
        Spec("deepseek-v3-tiny-noq", "deepseek_v3", 7 + s,
             dict(DS_TINY, num_hidden_layers=3, first_k_dense_replace=1, q_lora_rank=None, n_routed_experts=8,
                  num_experts_per_tok=2, n_group=1, topk_group=1, n_shared_experts=1, routed_scaling_factor=1.5,
                  norm_topk_prob=False, rope_interleave=False,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, num_mtp_layers=1),
             max_shard_size="100KB", min_shards=3, legacy_config=True, extra_config=DS_HUB_KEYS, mtp_layers=1,
             k_overrides=(1, 4), router_k=4),
        # 256 wide (hidden and expert intermediate: one Q4_K super-block per row) and bf16,
        # so Q4_K experts can be measured against the bf16 model (QuantizedExpertTests). The
        # LM head is untied (fan-in scaled, logits of std ~1, unlike the tied fixtures' ~√hidden),
        # so next-token distributions are soft enough for KL to measure anything.
        Spec("qwen3-moe-tiny-wide", "qwen3_moe", 10 + s,
             dict(TINY, **qwen_rope, hidden_size=256, num_attention_heads=2, num_key_value_heads=1, head_dim=64,
                  moe_intermediate_size=256, num_hidden_layers=2, num_experts=4, num_experts_per_tok=2,
                  norm_topk_prob=True, tie_word_embeddings=False),
             dtype=torch.bfloat16, k_overrides=(1, 4), router_k=4),
        # config.json says model_type kimi_k2 (as Kimi-K2's does); transformers loads it as deepseek_v3.
        Spec("kimi-k2-tiny", "deepseek_v3", 8 + s,
             dict(DS_TINY, num_hidden_layers=2, first_k_dense_replace=1, q_lora_rank=48, n_routed_experts=24,
                  num_experts_per_tok=4, n_group=1, topk_group=1, n_shared_experts=1, routed_scaling_factor=2.827,
                  norm_topk_prob=True, rope_interleave=True,
                  rope_parameters={"rope_type": "default", "rope_theta": 50000.0}, num_mtp_layers=0),
             legacy_config=True, extra_config={"model_type": "kimi_k2", **DS_HUB_KEYS}, k_overrides=(2, 8), router_k=8),
        # MiniMax-M2: q/k norm over the whole projection, partial rotary (rotary_dim 8 of 16),
        # sigmoid router with a selection bias; config.json as the Hub's (rope_theta and
        # rotary_dim at the top, the keys transformers ignores), Mixtral-style weight names.
        Spec("minimax-m2-tiny", "minimax_m2", 11 + s, MINIMAX_TINY,
             legacy_config=True, extra_config=MINIMAX_HUB_KEYS, k_overrides=(1, 4, 8), router_k=4),
        # dots.llm1: Qwen3 attention (per-head q/k norm, biases on q/k/v and o) on DeepSeek-V3's
        # MoE (sigmoid grouped router with selection bias, scaling, a shared expert, a dense
        # first layer); Hub-style config with sliding_window null (every layer full).
        Spec("dots1-tiny", "dots1", 12 + s,
             dict(TINY, num_hidden_layers=3, first_k_dense_replace=1, n_routed_experts=8, num_experts_per_tok=2,
                  n_group=2, topk_group=1, n_shared_experts=1, routed_scaling_factor=2.0, norm_topk_prob=True,
                  attention_bias=True, sliding_window=None,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
             legacy_config=True, k_overrides=(1, 3, 4), router_k=3),
        # dots.llm1 with sliding layers from max_window_layers (1) on: layer 0 full, layers 1-2
        # a window of 5 positions, which every prompt but the shortest exceeds.
        Spec("dots1-tiny-sliding", "dots1", 16 + s,
             dict(TINY, num_hidden_layers=3, first_k_dense_replace=1, n_routed_experts=8, num_experts_per_tok=2,
                  n_group=1, topk_group=1, n_shared_experts=1, routed_scaling_factor=1.0, norm_topk_prob=True,
                  attention_bias=False, sliding_window=5, max_window_layers=1,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
             k_overrides=(1, 4), router_k=4),
        # dots.llm1 as released (and as llama.cpp's `dots1` computes it, which needs as many
        # key/value heads as query heads): multi-head attention, one expert group, no
        # attention biases, every layer full; converted to GGUF by tools/fixture_gguf.py.
        Spec("dots1-tiny-mha", "dots1", 19 + s,
             dict(TINY, num_hidden_layers=3, num_key_value_heads=4, first_k_dense_replace=1, n_routed_experts=8,
                  num_experts_per_tok=2, n_group=1, topk_group=1, n_shared_experts=1, routed_scaling_factor=2.0,
                  norm_topk_prob=True, attention_bias=False, sliding_window=None,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
             legacy_config=True, k_overrides=(1, 4), router_k=4),
        # K-EXAONE: per-head q/k norm, sliding layers (window 5) with rotary and global layers
        # without (NoPE), every second layer global (sliding_window_pattern 2); DeepSeek-V3's
        # grouped sigmoid router with the bias stored as mlp.e_score_correction_bias.
        Spec("exaone-moe-tiny", "exaone_moe", 17 + s,
             dict(vocab_size=320, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                  max_position_embeddings=256, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=4,
                  num_experts=8, num_experts_per_tok=2, num_shared_experts=1, first_k_dense_replace=1, n_group=2,
                  topk_group=1, routed_scaling_factor=2.5, norm_topk_prob=True, sliding_window=5,
                  sliding_window_pattern=2, bos_token_id=None, eos_token_id=None, pad_token_id=None,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
             legacy_config=True, k_overrides=(1, 3, 4), router_k=3),
        # ERNIE-4.5-MoE: interleaved full rotary, softmax router with a selection bias stored
        # [1, E] in moe_statics, an ungated shared expert, layers from moe_layer_start_index
        # (here 1) on, tied embeddings; Hub-style config.
        Spec("ernie45-moe-tiny", "ernie4_5_moe", 15 + s,
             dict(vocab_size=320, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                  max_position_embeddings=256, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=3,
                  moe_num_experts=8, moe_k=2, moe_num_shared_experts=1, moe_layer_start_index=1, moe_layer_end_index=-1,
                  moe_layer_interval=1, tie_word_embeddings=True, use_bias=False, bos_token_id=None, eos_token_id=None,
                  pad_token_id=None, rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
             legacy_config=True, k_overrides=(1, 4, 8), router_k=4),
        # ERNIE-4.5-MoE as llama.cpp's converter can say it: it writes the shared experts' width
        # as intermediate_size / num_key_value_heads (true of the released 21B-A3B), so here
        # 64 / 2 = 32 = moe_intermediate_size × 1 shared expert; converted to GGUF.
        # A vocabulary of 640: a SentencePiece model with byte fallback needs 259 pieces
        # before its first character.
        Spec("ernie45-moe-tiny-ff64", "ernie4_5_moe", 24 + s,
             dict(vocab_size=640, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                  max_position_embeddings=256, intermediate_size=64, moe_intermediate_size=32, num_hidden_layers=3,
                  moe_num_experts=8, moe_k=2, moe_num_shared_experts=1, moe_layer_start_index=1, moe_layer_end_index=-1,
                  moe_layer_interval=1, tie_word_embeddings=True, use_bias=False, bos_token_id=None, eos_token_id=None,
                  pad_token_id=None, rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
             legacy_config=True, k_overrides=(1, 4), router_k=4),
        # DeepSeek-V3.2: DeepSeek-V3's MLA and router with DeepSeek Sparse Attention — an
        # indexer (32 heads of 64, rope on the first 8) whose top 4 positions each query attends
        # to, so every prompt longer than 4 tokens drops keys. Index heads of 64: llama.cpp's
        # indexer multiplies q and k by a Hadamard matrix of at least 64 (tools/fixture_gguf.py).
        Spec("deepseek-v32-tiny", "deepseek_v32", 25 + s,
             dict(DS_TINY, num_hidden_layers=3, first_k_dense_replace=1, q_lora_rank=48, n_routed_experts=8,
                  num_experts_per_tok=2, n_group=2, topk_group=1, n_shared_experts=1, routed_scaling_factor=2.5,
                  norm_topk_prob=True, index_n_heads=32, index_head_dim=64, index_topk=4,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
             legacy_config=True, k_overrides=(1, 4), router_k=4),
        # LongCat-Flash: two MLA and two dense sub-blocks per layer, the shortcut MoE over 8
        # routed and 4 zero-computation (identity) experts, chosen by softmax + correction bias.
        Spec("longcat-flash-tiny", "longcat_flash", 27 + s,
             dict(vocab_size=320, hidden_size=64, num_layers=2, num_attention_heads=4, kv_lora_rank=32, q_lora_rank=48,
                  qk_rope_head_dim=8, head_dim=8, qk_nope_head_dim=16, v_head_dim=16, ffn_hidden_size=96, expert_ffn_hidden_size=32,
                  n_routed_experts=8, zero_expert_num=4, moe_topk=3, routed_scaling_factor=2.0, max_position_embeddings=256,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
             # K=1 is not a reference: LongcatFlashExperts squeezes the one-choice mask to 1-D and fails.
             k_overrides=(2, 5), router_k=3),
        # GLM-5: DeepSeek-V3.2's sparse attention with the indexer's rotary on interleaved pairs
        # and cross-layer top-k sharing (layers 1 and 3 attend to what layers 0 and 2 chose),
        # GLM's single-group sigmoid router, an MTP layer declared (never loaded).
        Spec("glm-moe-dsa-tiny", "glm_moe_dsa", 26 + s,
             dict(DS_TINY, num_hidden_layers=4, first_k_dense_replace=1, q_lora_rank=48, n_routed_experts=8,
                  num_experts_per_tok=2, n_group=1, topk_group=1, n_shared_experts=1, routed_scaling_factor=2.5,
                  norm_topk_prob=True, index_n_heads=32, index_head_dim=64, index_topk=4,
                  indexer_types=["full", "shared", "full", "shared"],
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
             extra_config={"num_nextn_predict_layers": 1}, k_overrides=(1, 4), router_k=4),
        # GLM-4.7-Flash: MLA (q-LoRA, interleaved rope) with GLM's grouped sigmoid router and a
        # shared expert; layers per mlp_layer_types (sparse, dense, sparse: not DeepSeek's
        # first_k_dense_replace rule), an MTP layer declared (never loaded).
        Spec("glm4-moe-lite-tiny", "glm4_moe_lite", 14 + s,
             dict(DS_TINY, num_hidden_layers=3, q_lora_rank=48, n_routed_experts=8, num_experts_per_tok=2, n_group=2,
                  topk_group=1, n_shared_experts=1, routed_scaling_factor=1.8, norm_topk_prob=True, rope_interleave=True,
                  mlp_layer_types=["sparse", "dense", "sparse"], bos_token_id=None, eos_token_id=None,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
             legacy_config=True, extra_config={"num_nextn_predict_layers": 1}, k_overrides=(1, 3, 4), router_k=3),
        # GLM-4.7-Flash as released (a dense first layer, then MoE: what llama.cpp's deepseek2,
        # which reads leading_dense_block_count, can say); converted to GGUF by fixture_gguf.py.
        Spec("glm4-moe-lite-tiny-lead", "glm4_moe_lite", 22 + s,
             dict(DS_TINY, num_hidden_layers=3, q_lora_rank=48, n_routed_experts=8, num_experts_per_tok=2, n_group=2,
                  topk_group=1, n_shared_experts=1, routed_scaling_factor=1.8, norm_topk_prob=True, rope_interleave=True,
                  mlp_layer_types=["dense", "sparse", "sparse"], bos_token_id=None, eos_token_id=None,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
             legacy_config=True, extra_config={"num_nextn_predict_layers": 1}, k_overrides=(1, 4), router_k=4),
        # gpt-oss: attention sinks, q/k/v/o biases, alternating sliding/full layers, YaRN
        # (truncate false), router with a bias and softmax over the top-k logits, experts
        # input-major with interleaved gate/up, biases and the clamped SwiGLU; Hub-style config.
        Spec("gpt-oss-tiny", "gpt_oss", 18 + s, GPT_OSS_TINY,
             legacy_config=True, extra_config=GPT_OSS_HUB_KEYS, k_overrides=(1, 4, 8), router_k=4),
        # The same architecture with the experts as released: MXFP4 blocks and scales, the
        # released swiglu_limit 7 and YaRN with truncate true — what a GGUF file can say
        # (llama.cpp fixes the limit at 7 and floors/ceils YaRN's correction range), so the
        # GGUF converted from it (tools/fixture_gguf.py) means the same model.
        Spec("gpt-oss-tiny-mxfp4", "gpt_oss", 19 + s,
             dict(GPT_OSS_TINY, num_hidden_layers=2, swiglu_limit=7.0,
                  rope_parameters=dict(GPT_OSS_TINY["rope_parameters"], truncate=True)),
             mxfp4=True, k_overrides=(1, 3), router_k=3),
        # Trinity (afmoe): sandwich norms, a sigmoid gate on the attention output, per-head
        # q/k norm, sliding layers (window 5) with rotary and global layers without (every
        # second layer global), sigmoid router with expert_bias and route_scale 2.0, a shared
        # expert, a dense first layer, μP embedding scaling; Hub-style config.
        Spec("afmoe-tiny", "afmoe", 20 + s,
             dict(vocab_size=320, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                  max_position_embeddings=256, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=4,
                  num_dense_layers=1, num_experts=8, num_experts_per_tok=2, num_shared_experts=1, route_scale=2.0,
                  global_attn_every_n_layers=2, sliding_window=5, mup_enabled=True, bos_token_id=None,
                  eos_token_id=None, pad_token_id=None, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
             legacy_config=True, k_overrides=(1, 3, 4), router_k=3),
        # Trinity as released (and as llama.cpp's `afmoe` computes it, which fixes the pattern
        # at three sliding layers then one global NoPE layer): converted to GGUF by
        # tools/fixture_gguf.py.
        Spec("afmoe-tiny-every4", "afmoe", 21 + s,
             dict(vocab_size=320, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                  max_position_embeddings=256, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=4,
                  num_dense_layers=1, num_experts=8, num_experts_per_tok=2, num_shared_experts=1, route_scale=2.0,
                  global_attn_every_n_layers=4, sliding_window=5, mup_enabled=True, bos_token_id=None,
                  eos_token_id=None, pad_token_id=None, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
             legacy_config=True, k_overrides=(1, 4), router_k=4),
        # Hunyuan-A13B: q/k norm after rotary (`query_layernorm`/`key_layernorm`), NTK-alpha rope,
        # softmax router `gate.wg`, a `shared_mlp` beside the experts, q/k/v/o biases; config.json
        # in the Hub style (rope_scaling {type: dynamic, alpha}, the keys transformers ignores).
        Spec("hunyuan-moe-tiny", "hunyuan_v1_moe", 13 + s,
             dict(vocab_size=320, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                  max_position_embeddings=256, intermediate_size=32, num_hidden_layers=3, num_experts=8, moe_topk=2,
                  attention_bias=True, tie_word_embeddings=False,
                  rope_parameters={"rope_type": "dynamic", "alpha": 1000.0, "factor": 1.0, "rope_theta": 10000.0}),
             legacy_config=True, extra_config=HUNYUAN_HUB_KEYS, k_overrides=(1, 4, 8), router_k=4),
        # Hunyuan-A13B shaped as llama.cpp's converter and `hunyuan-moe` can take it: head width
        # 128 from hidden/heads (the converter's NTK-alpha assumption; one head keeps it
        # small), no attention biases (as released), max_position_embeddings 32k; for GGUF.
        Spec("hunyuan-moe-tiny-128", "hunyuan_v1_moe", 23 + s,
             dict(vocab_size=320, hidden_size=128, num_attention_heads=1, num_key_value_heads=1, head_dim=128,
                  max_position_embeddings=32768, intermediate_size=32, num_hidden_layers=3, num_experts=8,
                  moe_topk=2, attention_bias=False, tie_word_embeddings=False,
                  rope_parameters={"rope_type": "dynamic", "alpha": 1000.0, "factor": 1.0, "rope_theta": 10000.0}),
             legacy_config=True, extra_config=HUNYUAN_HUB_KEYS, k_overrides=(1, 4), router_k=4),
        # The deepseek-v3-tiny architecture with FP8 weights and 32×32 block scales (moe 48:
        # partial blocks); goldens from the dequantised weights in fp32.
        Spec("deepseek-v3-tiny-fp8", "deepseek_v3", 9 + s, dict(ds_tiny, num_hidden_layers=3, moe_intermediate_size=48),
             fp8_block=32, k_overrides=(1, 8), router_k=8),
    ]


# ---------------------------------------------------------------------------------------
# Models

def build_model(spec: Spec):
    """The in-memory fp32 model, re-initialised (the dtype conversion happens at save time)."""
    torch.manual_seed(spec.seed)
    if spec.architecture == "qwen3_moe":
        model = Qwen3MoeForCausalLM(Qwen3MoeConfig(**spec.config, **IMPLEMENTATIONS))
    elif spec.architecture == "deepseek_v3":
        model = DeepseekV3ForCausalLM(DeepseekV3Config(**spec.config, **IMPLEMENTATIONS))
    elif spec.architecture == "exaone_moe":
        model = ExaoneMoeForCausalLM(ExaoneMoeConfig(**spec.config, **IMPLEMENTATIONS))
    elif spec.architecture == "ernie4_5_moe":
        model = Ernie4_5_MoeForCausalLM(Ernie4_5_MoeConfig(**spec.config, **IMPLEMENTATIONS))
    elif spec.architecture == "deepseek_v32":
        model = DeepseekV32ForCausalLM(DeepseekV32Config(**spec.config, **IMPLEMENTATIONS))
    elif spec.architecture == "longcat_flash":
        model = LongcatFlashForCausalLM(LongcatFlashConfig(**spec.config, **IMPLEMENTATIONS))
    elif spec.architecture == "glm_moe_dsa":
        model = GlmMoeDsaForCausalLM(GlmMoeDsaConfig(**spec.config, **IMPLEMENTATIONS))
    elif spec.architecture == "glm4_moe_lite":
        model = Glm4MoeLiteForCausalLM(Glm4MoeLiteConfig(**spec.config, **IMPLEMENTATIONS))
    elif spec.architecture == "hunyuan_v1_moe":
        model = HunYuanMoEV1ForCausalLM(HunYuanMoEV1Config(**spec.config, **IMPLEMENTATIONS))
    elif spec.architecture == "dots1":
        model = Dots1ForCausalLM(Dots1Config(**spec.config, **IMPLEMENTATIONS))
    elif spec.architecture == "minimax_m2":
        model = MiniMaxM2ForCausalLM(MiniMaxM2Config(**spec.config, **IMPLEMENTATIONS))
    elif spec.architecture == "gpt_oss":
        model = GptOssForCausalLM(GptOssConfig(**spec.config, **IMPLEMENTATIONS))
    elif spec.architecture == "afmoe":
        model = AfmoeForCausalLM(AfmoeConfig(**spec.config, **IMPLEMENTATIONS))
    elif spec.architecture == "bailing_hybrid":
        model = BailingHybridForCausalLM(BailingHybridConfig(**spec.config, **IMPLEMENTATIONS))
    elif spec.architecture == "kimi_linear":
        model = KimiLinearForCausalLM(KimiLinearConfig(**spec.config, **IMPLEMENTATIONS))
    elif spec.architecture == "qwen3_next":
        model = Qwen3NextForCausalLM(Qwen3NextConfig(**spec.config, **IMPLEMENTATIONS))
    else:
        args = dict(spec.config)
        partial = args.pop("partial_rotary_factor", 1.0)
        # transformers 5 carries partial_rotary_factor inside rope_parameters (and writes it there).
        model = Glm4MoeForCausalLM(Glm4MoeConfig(
            **args, **IMPLEMENTATIONS,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": partial}))
    reinitialise(model)
    link_routers(model)
    return model.eval()


@torch.no_grad()
def reinitialise(model, hidden=None):
    """Weights large enough that logits and routers are far from ties, scaled by fan-in so
    activations stay O(1) whatever the hidden size (default: the config's)."""
    hidden = hidden or model.config.hidden_size
    for name, p in model.named_parameters():
        if name.endswith("norm.weight") or "layernorm" in name:
            p.copy_(1 + 0.1 * torch.randn_like(p))
        elif "embed_tokens" in name:
            p.normal_(0, 1.0)
        elif name.endswith("e_score_correction_bias"):
            # ERNIE keeps it as a parameter: next to softmax scores (~1/experts), not sigmoid ones.
            p.normal_(0, 0.02)
        elif name.endswith("self_attn.sinks"):
            # gpt-oss's sink logits, on the scale of the attention scores so they matter.
            p.normal_(0, 1.0)
        elif name.endswith(("mlp.experts.gate_up_proj", "mlp.experts.down_proj")) and p.dim() == 3:
            # gpt-oss stacks experts input-major ([E, in, out]): the fan-in is dim 1.
            p.normal_(0, 1.0 / math.sqrt(p.shape[1]))
        elif name.endswith("_proj_bias"):
            p.normal_(0, 0.1)
        elif name.endswith(("mlp.gate.weight", "mlp.router.weight", "mlp.router.gate.weight", "mlp.router.classifier.weight")):
            # Router logits of std ~2 on normalised inputs: clearly ordered, not saturated.
            p.normal_(0, 2.0 / math.sqrt(hidden))
        elif name.endswith(".bias"):
            p.normal_(0, 0.1)
        elif p.dim() >= 2:
            p.normal_(0, 1.0 / math.sqrt(p.shape[-1]))
        else:
            p.normal_(0, 0.1)
    for name, b in model.named_buffers():
        if name.endswith("router.e_score_correction_bias"):
            # LongCat-Flash's: next to softmax scores (~1/experts), as ERNIE's.
            b.normal_(0, 0.02)
        elif name.endswith("e_score_correction_bias"):
            # Large enough next to sigmoid scores to change some selections (counted later).
            b.normal_(0, 0.1)


def router_of(layer):
    """A decoder layer's MoE router module (`mlp.gate`; gpt-oss: `mlp.router`), or None
    for a dense layer."""
    return getattr(layer.mlp, "gate", None) or getattr(layer.mlp, "router", None)


def is_afmoe(router) -> bool:
    """AfmoeTokenChoiceRouter: sigmoid, the block's expert_bias for the choice, +1e-20, route_scale."""
    return type(router).__name__ == "AfmoeTokenChoiceRouter"


def is_gpt_oss(router) -> bool:
    """GptOssTopKRouter: Linear with bias, top-k of the logits, softmax over those."""
    return type(router).__name__ == "GptOssTopKRouter"


def link_routers(model):
    """MiniMaxM2TopKRouter takes the block's e_score_correction_bias as an argument; give
    each router a reference to its block so the helpers here find the bias on the router
    as for GLM4/DeepSeek (object.__setattr__: not registered as a submodule)."""
    for layer in model.model.layers:
        if type(getattr(layer.mlp, "gate", None)).__name__ == "MiniMaxM2TopKRouter":
            object.__setattr__(layer.mlp.gate, "_jindou_block", layer.mlp)
        if is_afmoe(getattr(layer.mlp, "router", None)):
            object.__setattr__(layer.mlp.router, "_jindou_block", layer.mlp)
            layer.mlp.router.hidden_dim = model.config.hidden_size  # AfmoeTokenChoiceRouter keeps no width
        if is_hunyuan(getattr(layer.mlp, "gate", None)) or is_ernie(getattr(layer.mlp, "gate", None)):
            layer.mlp.gate.hidden_dim = model.config.hidden_size  # HunYuanMoEV1Gate keeps no width
    return model


def is_longcat(router) -> bool:
    """LongcatFlashTopkRouter: `classifier` over routed + zero-computation experts, softmax,
    the correction bias for the choice, unnormalised weights × routed_scaling_factor."""
    return type(router).__name__ == "LongcatFlashTopkRouter"


def is_hunyuan(router) -> bool:
    """HunYuanMoEV1Gate: softmax, renormalised top-k, its weight in a Linear `wg`."""
    return type(router).__name__ == "HunYuanMoEV1Gate"


def is_ernie(router) -> bool:
    """Ernie4_5_MoeTopKRouter: softmax, selection bias in `moe_statics` ([1, E]), clamped renormalisation."""
    return type(router).__name__ == "Ernie4_5_MoeTopKRouter"


def router_weight(router):
    return router.wg.weight if is_hunyuan(router) else router.weight


def is_minimax(router) -> bool:
    return "_jindou_block" in router.__dict__ and not is_afmoe(router)


def correction_bias(router):
    if is_ernie(router):
        return router.moe_statics.e_score_correction_bias.squeeze(0)
    if is_afmoe(router):
        return router._jindou_block.expert_bias
    return router._jindou_block.e_score_correction_bias if is_minimax(router) else router.e_score_correction_bias


def routers(model):
    return [router_of(layer) for layer in model.model.layers if router_of(layer) is not None]


def is_glm(router) -> bool:
    """GLM4/DeepSeek's grouped sigmoid router (MiniMax's sigmoid router has no groups)."""
    return hasattr(router, "e_score_correction_bias")


def set_top_k(model, k: int):
    """transformers caches top_k on each router at construction: set it there too."""
    model.config.num_experts_per_tok = k
    for r in routers(model):
        r.top_k = k


def reachable_experts(model) -> int:
    """Experts a token can reach; beyond this transformers' group-limited topk picks -inf
    (masked) experts, which Jindou deliberately does differently (docs/routing.md)."""
    c = model.config
    if getattr(c, "zero_expert_num", None):  # LongCat-Flash: the identity experts can be chosen too
        return c.n_routed_experts + c.zero_expert_num
    if getattr(c, "n_group", None):
        return (getattr(c, "n_routed_experts", None) or c.num_experts) // c.n_group * c.topk_group
    return getattr(c, "num_experts", None) or c.num_local_experts


# ---------------------------------------------------------------------------------------
# Routing, re-derived from the router modules (Qwen3MoeTopKRouter, Glm4MoeTopkRouter)

def routing(router, hidden, bias=None):
    """(router logits, raw scores, selection scores, group scores) exactly as the router
    computes them. Selection scores of experts outside the allowed groups are -inf; group
    scores are None for ungrouped routers. `bias` overrides e_score_correction_bias."""
    hidden = hidden.reshape(-1, router.hidden_dim)
    if is_minimax(router):  # MiniMaxM2TopKRouter: sigmoid, bias for the choice, no groups
        logits = F.linear(hidden.to(router.weight.dtype), router.weight)
        scores = logits.float().sigmoid()
        return logits, scores, scores + (correction_bias(router) if bias is None else bias), None
    if is_afmoe(router):  # fp32 sigmoid, the block's expert_bias for the choice
        logits = router.gate(hidden).to(torch.float32)
        scores = torch.sigmoid(logits)
        return logits, scores, scores + (correction_bias(router) if bias is None else bias), None
    if is_gpt_oss(router):
        # Chosen by the logits; the auto rule's raw scores are the softmax numerators
        # exp(logit − max) (Jindou's `softmaxTopK`), whose shares among the chosen are their weights.
        logits = F.linear(hidden.to(router.weight.dtype), router.weight, router.bias)
        scores = (logits.float() - logits.float().max(dim=-1, keepdim=True).values).exp()
        return logits, scores, logits.float(), None
    if is_longcat(router):  # fp32 softmax over routed + zero experts, the bias for the choice only
        logits = F.linear(hidden.float(), router.classifier.weight.float(),
                          None if router.classifier.bias is None else router.classifier.bias.float())
        scores = logits.softmax(dim=-1)
        return logits, scores, scores + (correction_bias(router) if bias is None else bias), None
    if is_ernie(router):  # fp32 softmax, the bias for the choice only
        logits = F.linear(hidden.float(), router.weight.float())
        scores = F.softmax(logits, dim=1, dtype=torch.float)
        return logits, scores, scores + (correction_bias(router) if bias is None else bias), None
    if not is_glm(router):
        logits = F.linear(hidden.to(router_weight(router).dtype), router_weight(router))
        scores = F.softmax(logits, dtype=torch.float, dim=-1)
        return logits, scores, scores, None
    logits = F.linear(hidden.type(torch.float32), router.weight.type(torch.float32))
    scores = logits.sigmoid()
    choice = scores + (router.e_score_correction_bias if bias is None else bias)
    n, g = router.num_experts, router.num_group
    group_scores = choice.view(-1, g, n // g).topk(2, dim=-1)[0].sum(dim=-1)
    group_idx = torch.topk(group_scores, k=router.topk_group, dim=-1, sorted=False)[1]
    group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
    score_mask = group_mask.unsqueeze(-1).expand(-1, g, n // g).reshape(-1, n)
    choice = choice.masked_fill(~score_mask.bool(), float("-inf"))
    return logits, scores, choice, group_scores


def descending(choice, k):
    """Top-k expert indices by descending selection score, ties to the lower index."""
    return torch.sort(-choice, dim=-1, stable=True).indices[:, :k]


def auto_keep(raw, threshold):
    """Jindou's `auto` rule on raw scores already in descending selection order: the number
    of leading experts whose cumulative share reaches the threshold, and, per token, the
    closest any share c_k (k < Kmax) came to the threshold.

    Shares are running float32 sums (as Jindou accumulates them) compared in float64 as
    running >= threshold × total: c_k >= threshold without the rounding of a division."""
    cumulative = raw.float().cumsum(-1).double()
    total = cumulative[:, -1:]
    reached = cumulative >= threshold * total          # the last column is always True
    kept = reached.to(torch.int64).argmax(dim=-1) + 1   # first True
    shares = cumulative / total
    closeness = (shares[:, :-1] - threshold).abs().min(dim=-1).values if raw.shape[1] > 1 else None
    return kept, closeness


def auto_forward(router, threshold: float, kmax: int, sentinel: bool = False):
    """A router forward implementing `auto` for Kmax = the configured K.

    Returns the router's usual (logits, weights [T, Kmax], indices [T, Kmax]): dropped
    experts keep their index with weight 0, so they contribute exactly 0 (0 · finite).
    `sentinel=True` instead points dropped slots at index num_experts, which the eager
    experts loop skips outright; the self-check compares the two."""
    glm = (is_glm(router) or is_afmoe(router)) and not is_longcat(router)  # +1e-20 and a scaling factor
    scaling = router.route_scale if is_afmoe(router) else getattr(router, "routed_scaling_factor", 1.0)
    normalise = (False if is_longcat(router)
                 else True if is_minimax(router) or is_hunyuan(router) or is_ernie(router) or is_gpt_oss(router) or is_afmoe(router)
                 else router.norm_topk_prob)

    def forward(hidden_states, *_):  # MiniMax's router also takes the block's bias (read in routing)
        logits, scores, choice, _ = routing(router, hidden_states)
        order = descending(choice, kmax)
        raw = scores.gather(1, order)
        kept, _ = auto_keep(raw, threshold)
        mask = torch.arange(kmax).unsqueeze(0) < kept.unsqueeze(1)
        weights = raw * mask
        if normalise:
            denominator = weights.sum(dim=-1, keepdim=True) + (1e-20 if glm else 0.0)
            weights = weights / denominator
        if glm or is_longcat(router):
            weights = weights * scaling
        router._jindou_auto_mask = mask  # read by RouterRecorder for the router goldens
        if sentinel:
            order = order.masked_fill(~mask, router.num_experts)
        return logits, weights.to(logits.dtype), order

    return forward


class Patch:
    """Temporarily sets every router's top_k (fixed K) or replaces its forward (auto)."""

    def __init__(self, model, k=None, auto=None, sentinel=False):
        self.model, self.k, self.auto, self.sentinel = model, k, auto, sentinel
        self.configured = model.config.num_experts_per_tok

    def __enter__(self):
        if self.k is not None:
            assert self.k <= reachable_experts(self.model), f"K={self.k} exceeds the reachable experts"
            set_top_k(self.model, self.k)
        if self.auto is not None:
            for r in routers(self.model):
                r.forward = auto_forward(r, self.auto, self.configured, self.sentinel)
        return self

    def __exit__(self, *exc):
        set_top_k(self.model, self.configured)
        for r in routers(self.model):
            r.__dict__.pop("forward", None)
            r.__dict__.pop("_jindou_auto_mask", None)


def experts_setting(k):
    """(fixed K or None, auto threshold or None) for a case's experts_per_token."""
    if isinstance(k, tuple):  # ("auto", threshold)
        return None, k[1]
    return k, None


# ---------------------------------------------------------------------------------------
# Goldens

def top_gap(logits: torch.Tensor) -> float:
    top2 = logits.float().topk(2, dim=-1)[0]
    return float((top2[..., 0] - top2[..., 1]).min())


class RouterRecorder:
    """Forward hooks on every MoE gate: what it received, what it returned, and how close
    its decisions came to flipping (expert margin at K, group margin, auto threshold)."""

    def __init__(self, model, k_effective: int, auto_threshold: float | None = None):
        self.model, self.k, self.threshold = model, k_effective, auto_threshold
        self.captures, self.handles = [], []
        self.margins, self.group_margins, self.threshold_margins = [], [], []

    def __enter__(self):
        for layer_index, layer in enumerate(self.model.model.layers):
            if router_of(layer) is not None:
                self.handles.append(router_of(layer).register_forward_hook(self.hook(layer_index)))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()

    def hook(self, layer_index):
        def record(module, inputs, outputs):
            hidden = inputs[0].reshape(-1, module.hidden_dim)
            _, weights, indices = outputs
            mask = module.__dict__.pop("_jindou_auto_mask", None) if self.threshold is not None else None
            self.captures.append((layer_index, hidden.detach().float().clone(), indices.detach().clone(),
                                  weights.detach().float().clone(), None if mask is None else mask.clone()))
            _, scores, choice, group_scores = routing(module, hidden)
            ordered = choice.float().sort(dim=-1, descending=True).values
            if self.k < ordered.shape[-1]:
                # K-th chosen minus best unchosen allowed expert (masked experts are -inf).
                gap = ordered[:, self.k - 1] - ordered[:, self.k]
                gap = gap[torch.isfinite(gap)]
                if gap.numel():
                    self.margins.append(float(gap.min()))
            if group_scores is not None and module.topk_group < module.num_group:
                g = group_scores.sort(dim=-1, descending=True).values
                self.group_margins.append(float((g[:, module.topk_group - 1] - g[:, module.topk_group]).min()))
            if self.threshold is not None:
                _, closeness = auto_keep(scores.gather(1, descending(choice, self.k)), self.threshold)
                if closeness is not None:
                    self.threshold_margins.append(float(closeness.min()))
        return record


@torch.no_grad()
def greedy(model, prompt, n, **prefill_inputs):
    """Greedy decoding with a DynamicCache: prefill logits at every prompt position, the
    logits each new token was chosen from (row 0 = last prefill position), the tokens.
    `prefill_inputs` go to the prefill call only (a VL model's pixel values and grids)."""
    out = model(torch.tensor([prompt]), use_cache=True, **prefill_inputs)
    prefill = out.logits[0].float().clone()
    cache, logits = out.past_key_values, out.logits[0, -1]
    step_logits, tokens = [], []
    for _ in range(n):
        step_logits.append(logits.float().clone())
        token = int(logits.float().argmax())
        tokens.append(token)
        out = model(torch.tensor([[token]]), past_key_values=cache, use_cache=True)
        cache, logits = out.past_key_values, out.logits[0, -1]
    return prefill, torch.stack(step_logits), tokens


@torch.no_grad()
def generate_check(model, prompt, n, **prefill_inputs):
    """The same greedy run through model.generate: (tokens, logits [n, V]). The explicit
    all-ones mask matters: without one, generate masks every pad_token_id (0) in the prompt."""
    ids = torch.tensor([prompt])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                         do_sample=False, eos_token_id=None, pad_token_id=0, output_logits=True,
                         return_dict_in_generate=True, **prefill_inputs)
    return out.sequences[0, len(prompt):].tolist(), torch.stack([x[0].float() for x in out.logits])


def prompts_for(spec: Spec, vocab: int):
    g = torch.Generator().manual_seed(spec.seed * 7919)

    def prompt(n):
        return torch.randint(0, vocab, (n,), generator=g).tolist()
    prompts = {"short": prompt(5), "medium": prompt(9), "long": prompt(40), "override": prompt(7)}
    if spec.long_prompt:  # drawn last: the other prompts stay what they are without it
        prompts[f"long{spec.long_prompt}"] = prompt(spec.long_prompt)
    return prompts


def golden_cases(spec: Spec, prompts: dict):
    """(name, prompt, experts_per_token, max_new_tokens); experts_per_token is None for the
    configured K, an int, or ("auto", threshold)."""
    cases = [(f"default-{p}", prompts[p], None, 8) for p in ("short", "medium", "long")]
    if spec.long_prompt:
        cases.append((f"default-long{spec.long_prompt}", prompts[f"long{spec.long_prompt}"], None, 8))
    cases += [(f"k{k}", prompts["override"], k, 6) for k in spec.k_overrides]
    cases += [(f"auto{t}", prompts["override"], ("auto", t), 6) for t in spec.auto_thresholds]
    return cases


def sorted_capture(indices, weights, mask, width):
    """Rows sorted by ascending expert index (order-independent comparison); auto rows keep
    only the experts the rule kept and pad to Kmax with index -1 / weight 0."""
    if mask is None:
        order = indices.sort(dim=-1)
        return order.values.to(torch.int64), weights.gather(1, order.indices)
    rows_i, rows_w = [], []
    for i_row, w_row, m_row in zip(indices.tolist(), weights.tolist(), mask.tolist()):
        pairs = sorted((i, w) for i, w, m in zip(i_row, w_row, m_row) if m)
        pairs += [(-1, 0.0)] * (width - len(pairs))
        rows_i.append([p[0] for p in pairs])
        rows_w.append([p[1] for p in pairs])
    return torch.tensor(rows_i, dtype=torch.int64), torch.tensor(rows_w, dtype=torch.float32)


def minimum(values):
    values = [v for v in values if v is not None]
    return min(values) if values else None


def make_goldens(model, spec: Spec, prompts: dict):
    """Runs every case and the router captures; returns (metadata, tensors, selections):
    selections[i] lists case i's (layer, experts sorted by index) per router call."""
    kmax = model.config.num_experts_per_tok
    tensors, case_meta, generate_diffs, selections = {}, [], [], []
    for index, (name, prompt, experts, n) in enumerate(golden_cases(spec, prompts)):
        k, threshold = experts_setting(experts)
        k_effective = k or kmax
        with Patch(model, k=k, auto=threshold):
            with RouterRecorder(model, k_effective, threshold) as recorder:
                prefill, steps, tokens = greedy(model, prompt, n)
            # model.generate must agree with the manual loop (it keeps only the last
            # position's logits, so rows may differ by rounding).
            generated, generate_logits = generate_check(model, prompt, n)
        if generated != tokens:
            message = f"{spec.name} {name}: model.generate chose {generated}, the cache loop {tokens}"
            assert model.dtype != torch.float32, message
            print(f"  warning: {message}", file=sys.stderr)
        else:
            generate_diffs.append(float((generate_logits - steps).abs().max()))
        selections.append([(layer, indices.sort(dim=-1).values) for layer, _, indices, _, _ in recorder.captures])
        tensors[f"case{index}.prefill_logits"] = prefill.contiguous()
        tensors[f"case{index}.generated_logits"] = steps.contiguous()
        case_meta.append({
            "index": index, "name": name, "prompt_ids": prompt,
            "experts_per_token": "auto" if threshold is not None else k_effective,
            "auto_threshold": threshold, "max_new_tokens": n, "greedy_new_tokens": tokens,
            "min_top_gap": min(top_gap(prefill), top_gap(steps)),
            "min_routing_margin": minimum(recorder.margins),
            # Other near-ties that would flip a decision: the group choice, the auto rule.
            "min_group_margin": minimum(recorder.group_margins),
            "min_auto_threshold_margin": minimum(recorder.threshold_margins),
        })

    # Router captures during the 9-token prompt's prefill: configured K, one override, auto.
    router_meta = []
    router_settings = [None] + ([spec.router_k] if spec.router_k else []) + [("auto", spec.auto_thresholds[0])]
    for experts in router_settings:
        k, threshold = experts_setting(experts)
        with Patch(model, k=k, auto=threshold), RouterRecorder(model, k or kmax, threshold) as recorder:
            with torch.no_grad():
                model(torch.tensor([prompts["medium"]]))
        for layer_index, hidden, indices, weights, mask in recorder.captures:
            j = len(router_meta)
            idx, w = sorted_capture(indices, weights, mask, indices.shape[1])
            tensors[f"router{j}.hidden"] = hidden.contiguous()
            tensors[f"router{j}.indices"] = idx.contiguous()
            tensors[f"router{j}.weights"] = w.float().contiguous()
            router_meta.append({"index": j, "layer": layer_index,
                                "experts_per_token": "auto" if threshold is not None else (k or kmax),
                                "auto_threshold": threshold, "tokens": hidden.shape[0]})

    meta = {
        "generator": "tools/make_fixtures.py",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "checkpoint": spec.name,
        "architecture": model.config.architectures[0],
        "dtype": str(model.dtype).replace("torch.", ""),
        "seed": spec.seed,
        "attn_implementation": model.config._attn_implementation,
        "experts_implementation": model.config._experts_implementation,
        "eos_token_id": None,
        "max_abs_logit_diff_generate": max(generate_diffs, default=None),
        "cases": case_meta,
        "router": router_meta,
    }
    return meta, tensors, selections


def write_goldens(directory, stem, meta, tensors):
    save_file(tensors, os.path.join(directory, f"{stem}.safetensors"))
    with open(os.path.join(directory, f"{stem}.json"), "w") as f:
        json.dump(meta, f, indent=1)


# ---------------------------------------------------------------------------------------
# Checkpoints

def rewrite_config(path: str, legacy: bool, extra: dict):
    """Optionally rewrites a transformers-5 config.json in the style Hub checkpoints written
    by transformers 4.x use, then adds `extra` keys."""
    with open(path) as f:
        config = json.load(f)
    if legacy:
        rope = dict(config.pop("rope_parameters", None) or {})
        config["rope_theta"] = rope.pop("rope_theta", 10000.0)
        if "partial_rotary_factor" in rope:
            config["partial_rotary_factor"] = rope.pop("partial_rotary_factor")
        # Scaled rope the 4.x way, as DeepSeek-V3's config has it: {"type": "yarn", "factor": …}.
        rope_type = rope.pop("rope_type", "default")
        config["rope_scaling"] = None if rope_type == "default" else {"type": rope_type, **rope}
        if config.get("model_type") == "qwen3_moe" and "num_local_experts" in config:
            config["num_experts"] = config.pop("num_local_experts")
        if config.get("model_type") == "deepseek_v3":
            # Derived by transformers (head_dim = qk_rope_head_dim); DeepSeek's own configs lack
            # them, and rope_interleave (absent there: interleaved, transformers' default).
            config.pop("head_dim", None)
            config.pop("qk_head_dim", None)
            if config.get("rope_interleave") is True:
                del config["rope_interleave"]
        if config.get("model_type") == "minimax_m2" and "rotary_dim" in config:
            config.pop("partial_rotary_factor", None)  # MiniMax's Hub configs say rotary_dim only
        if "dtype" in config:
            config["torch_dtype"] = config.pop("dtype")
        assert "rope_parameters" not in config and "dtype" not in config
        assert "num_local_experts" not in config or config.get("model_type") in ("minimax_m2", "gpt_oss")  # their own name
    config.update(extra)
    with open(path, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)


def shard_files(directory):
    return sorted(f for f in os.listdir(directory) if f.startswith("model") and f.endswith(".safetensors"))


# model_type values transformers does not know, loaded as the architecture they name.
LOAD_AS = {"kimi_k2": "deepseek_v3"}


def read_config(directory) -> dict:
    with open(os.path.join(directory, "config.json")) as f:
        return json.load(f)


def load(directory, dtype):
    """from_pretrained, except for checkpoints transformers cannot load as they are: a
    model_type it refuses (kimi_k2), or FP8 weights (dequantised here, see dequantise_fp8).
    Those are staged in a temporary copy with a config transformers takes."""
    config = read_config(directory)
    mxfp4 = (config.get("quantization_config") or {}).get("quant_method") == "mxfp4"
    if config.get("model_type") not in LOAD_AS and ("quantization_config" not in config or mxfp4):
        # MXFP4 (gpt-oss): transformers' own loader dequantises the experts on CPU
        # (Mxfp4HfQuantizer → convert_moe_packed_tensors), exactly, in the requested dtype.
        return unmapped(link_routers(AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, **IMPLEMENTATIONS).eval()))
    with tempfile.TemporaryDirectory() as staged:
        for name in os.listdir(directory):
            if name.startswith("model") and name.endswith(".safetensors"):
                if "quantization_config" in config:
                    save_file(dequantised_file(os.path.join(directory, name), config), os.path.join(staged, name),
                              metadata={"format": "pt"})
                else:
                    os.symlink(os.path.join(directory, name), os.path.join(staged, name))
            elif name != "config.json":
                shutil.copy(os.path.join(directory, name), staged)
        config["model_type"] = LOAD_AS.get(config["model_type"], config["model_type"])
        config.pop("quantization_config", None)
        with open(os.path.join(staged, "config.json"), "w") as f:
            json.dump(config, f)
        return unmapped(link_routers(AutoModelForCausalLM.from_pretrained(staged, dtype=dtype, **IMPLEMENTATIONS).eval()))


@torch.no_grad()
def unmapped(model):
    """`model` with every parameter copied out of the memory-mapped safetensors file into
    fresh storage. torch's CPU matmuls round differently depending on their operands'
    address alignment, which a file's byte offsets would otherwise decide (measured: the
    reload of qwen3-next-tiny-moe differed from the in-memory model by 1.9e-6 in the logits
    with bitwise-equal tensors, and by 0 once copied)."""
    for parameter in model.parameters():
        parameter.data = parameter.data.clone()
    return model


@torch.no_grad()
def kimi_loading_report(directory) -> dict:
    """What transformers itself does with a `model_type: kimi_k2` checkpoint, recorded in
    golden.json: AutoModel refuses it, and DeepseekV3ForCausalLM.from_pretrained loads it
    without the per-expert → fused expert conversion (that mapping is keyed by model_type),
    leaving the routed experts uninitialised with only a load-report warning."""
    report = {}
    try:
        AutoModelForCausalLM.from_pretrained(directory, **IMPLEMENTATIONS)
        report["AutoModelForCausalLM"] = "loaded"
    except ValueError as error:
        report["AutoModelForCausalLM"] = "ValueError: " + str(error).split(".")[0]
    _, info = DeepseekV3ForCausalLM.from_pretrained(directory, output_loading_info=True, **IMPLEMENTATIONS)
    report["DeepseekV3ForCausalLM"] = {"missing_keys": len(info["missing_keys"]),
                                       "unexpected_keys": len(info["unexpected_keys"]),
                                       "missing_example": sorted(info["missing_keys"])[:2]}
    return report


# ---------------------------------------------------------------------------------------
# DeepSeek-V3 checkpoint layouts: MTP tensors, FP8 weights with block scales

@torch.no_grad()
def kimi_linear_hub_names(out_dir: str, config):
    """Kimi-Linear's Hub checkpoints keep a dense layer's MLP under `mlp.` and only the MoE under
    `block_sparse_moe.` (KimiDecoderLayer); transformers' reverse renaming writes the dense
    MLP under `block_sparse_moe.` too. Both load (the reload below checks it); the fixture
    takes the Hub's names."""
    path = os.path.join(out_dir, "model.safetensors")
    tensors = load_file(path)
    dense = [l for l, t in enumerate(config.mlp_layer_types) if t == "dense"]
    renamed = {}
    for name, tensor in tensors.items():
        for l in dense:
            stem = f"model.layers.{l}.block_sparse_moe."
            if name.startswith(stem):
                name = f"model.layers.{l}.mlp." + name[len(stem):]
        renamed[name] = tensor.contiguous()
    save_file(renamed, path, metadata={"format": "pt"})


def write_mtp_layers(spec: Spec, out_dir: str) -> list[str]:
    """Appends the tensors of spec.mtp_layers multi-token-prediction layers to the
    checkpoint, as DeepSeek-V3's has them at layer index num_hidden_layers (61): a whole
    decoder layer plus eh_proj [H, 2H], enorm, hnorm, shared_head.norm, shared_head.head
    [V, H] and embed_tokens [V, H]. Random values; the decoder layer's names come from
    save_pretrained of a model with the extra layers. Returns the names written."""
    layers = spec.config["num_hidden_layers"]
    donor_spec = replace(spec, seed=spec.seed + 500,
                         config=dict(spec.config, num_hidden_layers=layers + spec.mtp_layers))
    donor = build_model(donor_spec)
    hidden, vocab = spec.config["hidden_size"], spec.config["vocab_size"]
    extra = {}
    with tempfile.TemporaryDirectory() as scratch:
        donor.save_pretrained(scratch)
        tensors = load_file(os.path.join(scratch, "model.safetensors"))
    generator = torch.Generator().manual_seed(spec.seed + 501)
    for n in range(layers, layers + spec.mtp_layers):
        prefix = f"model.layers.{n}."
        extra.update({k: v for k, v in tensors.items() if k.startswith(prefix)})
        extra[prefix + "eh_proj.weight"] = torch.randn(hidden, 2 * hidden, generator=generator) / math.sqrt(2 * hidden)
        for norm in ("enorm", "hnorm", "shared_head.norm"):
            extra[prefix + norm + ".weight"] = 1 + 0.1 * torch.randn(hidden, generator=generator)
        extra[prefix + "shared_head.head.weight"] = torch.randn(vocab, hidden, generator=generator) / math.sqrt(hidden)
        extra[prefix + "embed_tokens.weight"] = torch.randn(vocab, hidden, generator=generator)
    # Into the last shard, as DeepSeek's index puts them in its last files.
    index_path = os.path.join(out_dir, "model.safetensors.index.json")
    last = shard_files(out_dir)[-1]
    shard = load_file(os.path.join(out_dir, last))
    assert not set(shard) & set(extra)
    save_file({**shard, **extra}, os.path.join(out_dir, last), metadata={"format": "pt"})
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
        for name, tensor in extra.items():
            index["weight_map"][name] = last
            index["metadata"]["total_size"] += tensor.numel() * tensor.element_size()
        with open(index_path, "w") as f:
            f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return sorted(extra)


def write_qwen3_next_mtp(spec: Spec, out_dir: str) -> list[str]:
    """Appends a Qwen3-Next MTP layer as the Hub's checkpoints store it (vLLM's
    `Qwen3NextMultiTokenPredictor`): `mtp.layers.0.*` — a full-attention decoder layer with the
    MoE block, its names from save_pretrained of a model with one more (full-attention) layer —
    and `mtp.fc` [H, 2H], `mtp.pre_fc_norm_embedding`, `mtp.pre_fc_norm_hidden`, `mtp.norm`
    (zero-centred weights, as every Qwen3-Next norm). Random values. Returns the names written."""
    layers = spec.config["num_hidden_layers"]
    donor_spec = replace(spec, seed=spec.seed + 500, config=dict(
        spec.config, num_hidden_layers=layers + 1, layer_types=spec.config["layer_types"] + ["full_attention"]))
    donor = build_model(donor_spec)
    hidden = spec.config["hidden_size"]
    with tempfile.TemporaryDirectory() as scratch:
        donor.save_pretrained(scratch)
        tensors = load_file(os.path.join(scratch, "model.safetensors"))
    prefix = f"model.layers.{layers}."
    extra = {"mtp.layers.0." + k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    generator = torch.Generator().manual_seed(spec.seed + 501)
    extra["mtp.fc.weight"] = torch.randn(hidden, 2 * hidden, generator=generator) / math.sqrt(2 * hidden)
    for norm in ("pre_fc_norm_embedding", "pre_fc_norm_hidden", "norm"):
        extra[f"mtp.{norm}.weight"] = 0.1 * torch.randn(hidden, generator=generator)
    last = shard_files(out_dir)[-1]
    shard = load_file(os.path.join(out_dir, last))
    assert not set(shard) & set(extra) and not os.path.exists(os.path.join(out_dir, "model.safetensors.index.json"))
    save_file({**shard, **extra}, os.path.join(out_dir, last), metadata={"format": "pt"})
    return sorted(extra)


@torch.no_grad()
def qwen3_next_mtp_goldens(model, out_dir, prompt) -> tuple[dict, dict]:
    """The Qwen3-Next MTP layer's logits for `prompt`, composed from transformers' own
    modules as vLLM's `Qwen3NextMultiTokenPredictor.forward` composes them (transformers has
    no Qwen3-Next MTP): e = pre_fc_norm_embedding(embed(x_{t+1})), h = pre_fc_norm_hidden(h_t)
    with h_t the main model's last hidden state after its final norm, fc([e | h]) →
    Qwen3NextDecoderLayer (full attention, the MoE block) → norm → the main lm_head; the pair
    (h_t, x_{t+1}) at position t + 1 (as transformers' MtpLayer places DeepSeek's). The prefill
    runs the pairs t < n under a causal mask; the decode step is the last row of the pairs
    t ≤ n (what a cache gives). Same layout as mtp_goldens."""
    from transformers.models.qwen3_next.modeling_qwen3_next import Qwen3NextDecoderLayer, Qwen3NextRMSNorm
    config = model.config
    layers = config.num_hidden_layers
    mtp_config = type(config)(**{**config.to_dict(), "num_hidden_layers": layers + 1,
                                 "layer_types": list(config.layer_types) + ["full_attention"]})
    mtp_config._attn_implementation = "eager"
    mtp_config._experts_implementation = "eager"
    weights = {k: v for k, v in load_all(out_dir).items() if k.startswith("mtp.")}
    block = Qwen3NextDecoderLayer(mtp_config, layers).eval()
    state = {k.removeprefix("mtp.layers.0."): v for k, v in weights.items() if k.startswith("mtp.layers.0.")}
    # The file's per-expert tensors (as save_pretrained writes them) stacked into the fused
    # parameters the module holds, gate before up, as check_mtp_layers does.
    experts = range(config.num_experts)
    fused = {"mlp.experts.gate_up_proj": torch.stack([torch.cat([state.pop(f"mlp.experts.{e}.gate_proj.weight"),
                                                                 state.pop(f"mlp.experts.{e}.up_proj.weight")]) for e in experts]),
             "mlp.experts.down_proj": torch.stack([state.pop(f"mlp.experts.{e}.down_proj.weight") for e in experts])}
    block.load_state_dict({**state, **fused}, strict=True)
    norms = {}
    for name in ("pre_fc_norm_embedding", "pre_fc_norm_hidden", "norm"):
        norms[name] = Qwen3NextRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        norms[name].weight.copy_(weights[f"mtp.{name}.weight"])
    fc = torch.nn.Linear(2 * config.hidden_size, config.hidden_size, bias=False)
    fc.weight.copy_(weights["mtp.fc.weight"])
    tokens = list(prompt)
    for _ in range(2):
        tokens.append(int(model(torch.tensor([tokens])).logits[0, -1].argmax()))
    n = len(prompt)
    hidden = model.model(torch.tensor([tokens])).last_hidden_state

    def run(count):
        ids = torch.tensor([tokens[1:count + 1]])
        x = fc(torch.cat([norms["pre_fc_norm_embedding"](model.model.embed_tokens(ids)),
                          norms["pre_fc_norm_hidden"](hidden[:, :count])], dim=-1))
        positions = torch.arange(1, count + 1).unsqueeze(0)
        mask = torch.full((1, 1, count, count), float("-inf")).triu(1)
        out = block(x, position_embeddings=model.model.rotary_emb(x, positions), attention_mask=mask, position_ids=positions)
        return model.lm_head(norms["norm"](out))[0]

    prefill = run(n)
    step = run(n + 1)[-1:]
    meta = {"tokens": tokens, "prompt_length": n, "prefill_positions": [1, n], "step_position": n + 1,
            "prefill_draft": int(prefill[-1].argmax()), "step_draft": int(step[-1].argmax()),
            "hidden_source": "model.model(...).last_hidden_state (after the final norm)",
            "reference": "transformers' Qwen3NextDecoderLayer and Qwen3NextRMSNorm composed as vLLM's "
                         "Qwen3NextMultiTokenPredictor (transformers has no Qwen3-Next MTP)",
            "tensors_written": len(weights)}
    return meta, {"mtp.prefill_logits": prefill.contiguous(), "mtp.step_logits": step[0].contiguous()}


@torch.no_grad()
def check_mtp_layers(model, out_dir, names) -> dict:
    """transformers' own MTP loader (MtpModel, used by generate(use_mtp=True)) must load
    the MTP tensors written, every one equal to the checkpoint's. It finds the MTP layers
    through DeepseekV3's _keys_to_ignore_on_load_unexpected, which hard-wires layer 61, so
    the pattern is pointed at this checkpoint's layer index for the check."""
    from transformers.modeling_layers import MtpModel
    layers = model.config.num_hidden_layers
    original = model._keys_to_ignore_on_load_unexpected
    model._keys_to_ignore_on_load_unexpected = [rf"model\.layers\.{layers}.*"]
    try:
        mtp = MtpModel.from_pretrained(model)  # raises if any MTP weight is missing
    finally:
        model._keys_to_ignore_on_load_unexpected = original
    written, compared = load_all(out_dir), 0
    for key, value in mtp.state_dict().items():
        if key.startswith(("embed_tokens.", "shared_head.")):
            continue  # tied to the main model, not loaded from the MTP layer
        n, rest = re.match(r"^layers\.(\d+)\.(.*)$", key).groups()
        prefix = f"model.layers.{layers + int(n)}."
        rest = rest.removeprefix("mtp_block.").replace("post_norm.", "shared_head.norm.")
        if rest.endswith("mlp.experts.gate_up_proj"):
            base = prefix + rest.removesuffix("gate_up_proj")
            expected = torch.stack([torch.cat([written[f"{base}{e}.gate_proj.weight"], written[f"{base}{e}.up_proj.weight"]])
                                    for e in range(value.shape[0])])
        elif rest.endswith("mlp.experts.down_proj"):
            base = prefix + rest.removesuffix("down_proj")
            expected = torch.stack([written[f"{base}{e}.down_proj.weight"] for e in range(value.shape[0])])
        else:
            expected = written[prefix + rest]
        assert torch.equal(value, expected), f"MtpModel {key} differs from the checkpoint"
        compared += 1
    return {"tensors_written": len(names), "mtp_model_tensors_checked": compared,
            "loader_note": "transformers' MtpModel loads them (every tensor equal) once "
                           f"_keys_to_ignore_on_load_unexpected points at layer {layers}; DeepseekV3 hard-wires "
                           "model.layers.61, so generate(use_mtp=True) would not find them in this checkpoint"}


@torch.no_grad()
def mtp_goldens(model, prompt) -> tuple[dict, dict]:
    """What transformers' MTP (MtpModel, as generate(use_mtp=True) drives it through
    MTPCandidateGenerator) computes for `prompt`: the main model's last hidden states
    (after the final norm: outputs.hidden_states[-1]), then the MTP layer over the pairs
    (h_t, x_{t+1}) at position t + 1 with a fresh MtpCache — the prefill — and then one more
    pair through the same cache, as a decode step does. Returns (metadata, tensors): every
    MTP position's logits (shared LM head after shared_head.norm) for both calls."""
    from transformers.cache_utils import MtpCache
    from transformers.modeling_layers import MtpModel
    layers = model.config.num_hidden_layers
    original = model._keys_to_ignore_on_load_unexpected
    model._keys_to_ignore_on_load_unexpected = [rf"model\.layers\.{layers}.*"]
    try:
        mtp = MtpModel.from_pretrained(model)
    finally:
        model._keys_to_ignore_on_load_unexpected = original
    mtp.eval()
    tokens = list(prompt)
    # The main model's greedy continuation supplies x_{N} and x_{N+1}.
    for _ in range(2):
        logits = model(torch.tensor([tokens])).logits
        tokens.append(int(logits[0, -1].argmax()))
    n = len(prompt)
    hidden = model(torch.tensor([tokens]), output_hidden_states=True).hidden_states[-1]
    cache = MtpCache(config=model.config.get_mtp_config())
    def run(ids, positions, previous):
        out = mtp.forward_layer(0, previous, torch.tensor([positions]), cache, input_ids=torch.tensor([ids]))
        return mtp._project_to_logits(out)[0]
    prefill = run(tokens[1:n + 1], list(range(1, n + 1)), hidden[:, :n])
    step = run(tokens[n + 1:n + 2], [n + 1], hidden[:, n:n + 1])
    meta = {"tokens": tokens, "prompt_length": n, "prefill_positions": [1, n], "step_position": n + 1,
            "prefill_draft": int(prefill[-1].argmax()), "step_draft": int(step[-1].argmax()),
            "hidden_source": "outputs.hidden_states[-1] (after the final norm)",
            "reference": "transformers MtpModel.forward_layer + _project_to_logits, MtpCache"}
    return meta, {"mtp.prefill_logits": prefill.contiguous(), "mtp.step_logits": step.contiguous()}


def load_all(directory) -> dict:
    tensors = {}
    for name in shard_files(directory):
        tensors.update(load_file(os.path.join(directory, name)))
    return tensors


# Every Linear weight of attention and of the dense, shared and routed MLPs; the router
# (mlp.gate.weight), embeddings, norms, lm_head and e_score_correction_bias stay F32.
FP8_WEIGHT = re.compile(r"^model\.layers\.\d+\.(self_attn\.(q_proj|q_a_proj|q_b_proj|kv_a_proj_with_mqa|kv_b_proj|o_proj)"
                        r"|mlp\.(shared_experts\.|experts\.\d+\.)?(gate_proj|up_proj|down_proj))\.weight$")


def expand_blocks(scale, shape, block):
    """[ceil(rows/B), ceil(cols/B)] block scales → one per weight element (edge blocks partial)."""
    return scale.repeat_interleave(block, 0).repeat_interleave(block, 1)[:shape[0], :shape[1]]


def quantise_fp8(weight, block):
    """DeepSeek-V3's recipe: scale_inv = max|w| over the block / 448 (1 for an all-zero
    block), w_fp8 = w / scale_inv rounded to float8_e4m3fn."""
    rows, cols = weight.shape
    r, c = -(-rows // block), -(-cols // block)
    padded = torch.zeros(r * block, c * block, dtype=torch.float32)
    padded[:rows, :cols] = weight.float().abs()
    amax = padded.view(r, block, c, block).amax(dim=(1, 3))
    scale_inv = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    scaled = (weight.float() / expand_blocks(scale_inv, weight.shape, block)).clamp(-FP8_MAX, FP8_MAX)
    quantised = scaled.to(torch.float8_e4m3fn)
    assert not torch.isnan(quantised.float()).any()
    return quantised, scale_inv.contiguous()


def dequantise_fp8(quantised, scale_inv, block):
    """fp8 → fp32, times its block's scale_inv (one fp32 multiply per element)."""
    return quantised.float() * expand_blocks(scale_inv, quantised.shape, block)


def fp8_block(config) -> int:
    q = config["quantization_config"]
    assert q["quant_method"] == "fp8" and q["fmt"] == "e4m3", q
    rows, cols = q["weight_block_size"]
    assert rows == cols, "square blocks only"
    return rows


def dequantised_file(path, config) -> dict:
    """A safetensors file of an FP8 checkpoint with every `<w>` + `<w>_scale_inv` pair
    replaced by the dequantised fp32 `<w>`."""
    block, tensors, out = fp8_block(config), load_file(path), {}
    for name, tensor in tensors.items():
        if name.endswith("_scale_inv"):
            assert name[:-len("_scale_inv")] in tensors, f"{name} without its weight"
        elif tensor.dtype == torch.float8_e4m3fn:
            out[name] = dequantise_fp8(tensor, tensors[name + "_scale_inv"], block)
        else:
            out[name] = tensor
    return out


@torch.no_grad()
def quantise_checkpoint(out_dir: str, block: int) -> dict:
    """Rewrites the fp32 checkpoint save_pretrained wrote in FP8 (DeepSeek's layout:
    `<name>` F8_E4M3 + `<name>_scale_inv` F32) and returns {checkpoint name: dequantised
    fp32 tensor} for the quantised weights, and the relative RMS weight error over them."""
    assert shard_files(out_dir) == ["model.safetensors"], "FP8 fixtures are single-file"
    path = os.path.join(out_dir, "model.safetensors")
    tensors, written, dequantised = load_file(path), {}, {}
    error = total = 0.0
    for name, tensor in tensors.items():
        if FP8_WEIGHT.match(name):
            assert tensor.dim() == 2 and tensor.dtype == torch.float32, name
            quantised, scale_inv = quantise_fp8(tensor, block)
            written[name], written[name + "_scale_inv"] = quantised, scale_inv
            dequantised[name] = dequantise_fp8(quantised, scale_inv, block)
            error += float((dequantised[name].double() - tensor.double()).pow(2).sum())
            total += float(tensor.double().pow(2).sum())
        else:
            assert tensor.dim() == 1 or name.endswith(("embed_tokens.weight", "lm_head.weight", "mlp.gate.weight")), name
            written[name] = tensor
    save_file(written, path, metadata={"format": "pt"})
    reread = load_file(path)
    for name, tensor in written.items():  # bit for bit (fp8 compared as bytes)
        assert reread[name].dtype == tensor.dtype and torch.equal(bits(reread[name]), bits(tensor)), name
    return dequantised, math.sqrt(error / total)


# gpt-oss's released quantization_config (which modules stay unquantised).
MXFP4_QUANTIZATION = {"quant_method": "mxfp4", "modules_to_not_convert": [
    "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}


@torch.no_grad()
def write_mxfp4_experts(spec: Spec, out_dir: str, model):
    """Rewrites the checkpoint's gpt-oss experts as released checkpoints store them: each
    `gate_up_proj` / `down_proj` [E, in, out] becomes `_blocks` [E, out, in/32, 16] (random
    bytes: every FP4 code in both nibbles) and `_scales` [E, out, in/32] (random E8M0
    exponents near 2^-4, so values have the fan-in scale). The in-memory model takes the
    weights transformers' `convert_moe_packed_tensors` decodes from them; the reload (by
    transformers' MXFP4 loader) must then equal it bit for bit."""
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors
    path = os.path.join(out_dir, "model.safetensors")
    tensors, written = load_file(path), {}
    g = torch.Generator().manual_seed(spec.seed * 31)
    for name, tensor in tensors.items():
        if not name.endswith(("mlp.experts.gate_up_proj", "mlp.experts.down_proj")):
            written[name] = tensor
            continue
        experts, fan_in, width = tensor.shape
        low = 122 if fan_in >= 64 else 123  # ~2.9 · 2^(e-127): ≈ 1/√fan_in
        blocks = torch.randint(0, 256, (experts, width, fan_in // 32, 16), generator=g, dtype=torch.uint8)
        scales = torch.randint(low, low + 2, (experts, width, fan_in // 32), generator=g, dtype=torch.uint8)
        written[name + "_blocks"], written[name + "_scales"] = blocks, scales
        model.get_parameter(name).copy_(convert_moe_packed_tensors(blocks, scales, dtype=torch.float32))
    save_file(written, path, metadata={"format": "pt"})


def bits(tensor):
    return tensor.view(torch.uint8) if tensor.dtype == torch.float8_e4m3fn else tensor


@torch.no_grad()
def set_checkpoint_tensor(model, name, tensor):
    """Writes a tensor given by its checkpoint name into the model (routed experts are
    stored per expert in checkpoints, fused as gate_up_proj [E, 2I, H] / down_proj [E, H, I]
    in the model)."""
    expert = re.match(r"^(model\.layers\.\d+\.mlp\.experts)\.(\d+)\.(gate|up|down)_proj\.weight$", name)
    if expert is None:
        model.get_parameter(name).copy_(tensor)
        return
    experts, index, kind = model.get_submodule(expert.group(1)), int(expert.group(2)), expert.group(3)
    half = experts.gate_up_proj.shape[1] // 2
    if kind == "down":
        experts.down_proj[index].copy_(tensor)
    elif kind == "gate":
        experts.gate_up_proj[index, :half].copy_(tensor)
    else:
        experts.gate_up_proj[index, half:].copy_(tensor)


@torch.no_grad()
def transformers_fp8_dequantise_check(out_dir, config) -> dict:
    """For the record: transformers' Fp8Dequantize (its loader's CPU path) on these tensors.
    It derives the block size as rows // scale_rows, so a weight with partial edge blocks
    is rejected (not divisible) or silently dequantised with the wrong block size."""
    from transformers.integrations.finegrained_fp8 import Fp8Dequantize
    block, tensors = fp8_block(config), load_all(out_dir)
    result = {"equal": 0, "different": 0, "rejected": 0, "different_example": None}
    for name, tensor in sorted(tensors.items()):
        if tensor.dtype != torch.float8_e4m3fn:
            continue
        ours = dequantise_fp8(tensor, tensors[name + "_scale_inv"], block)
        try:
            theirs = Fp8Dequantize(None)._dequantize_one(tensor, tensors[name + "_scale_inv"], torch.float32)
        except ValueError:
            result["rejected"] += 1
            continue
        if torch.equal(ours, theirs):
            result["equal"] += 1
        else:
            result["different"] += 1
            result["different_example"] = result["different_example"] or name
    return result


def first_attention(model):
    """The first layer's attention module (LongCat-Flash's layers hold a list of two;
    Qwen3-Next's first full-attention layer need not be layer 0)."""
    attention = next(layer.self_attn for layer in model.model.layers
                     if hasattr(layer, "self_attn") and getattr(layer, "block_type", "full_attention") == "full_attention")
    return attention[0] if isinstance(attention, torch.nn.ModuleList) else attention


def rope_summary(model) -> dict:
    """The rotary and softmax-scale numbers transformers uses (DeepSeek-V3), for golden.json."""
    config, rotary = model.config, model.model.rotary_emb
    attention = first_attention(model)
    rope = dict(config.rope_parameters)
    dim = config.qk_rope_head_dim
    summary = {
        "rope_type": rope["rope_type"], "rope_theta": rope["rope_theta"], "rope_interleave": config.rope_interleave,
        "rotary_dim": dim, "inv_freq": rotary.inv_freq.tolist(),
        "attention_factor": float(rotary.attention_scaling),  # multiplies cos and sin
        "softmax_scale": float(attention.scaling),
        "softmax_scale_unscaled": (config.qk_nope_head_dim + config.qk_rope_head_dim) ** -0.5,
    }
    summary["softmax_scale_multiplier"] = summary["softmax_scale"] / summary["softmax_scale_unscaled"]
    if rope["rope_type"] == "yarn":
        base, factor, original = rope["rope_theta"], rope["factor"], rope["original_max_position_embeddings"]

        def correction_dim(rotations):
            return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))
        extrapolation = [base ** (-2 * i / dim) for i in range(dim // 2)]
        summary["yarn"] = {
            key: rope.get(key) for key in ("factor", "original_max_position_embeddings", "beta_fast", "beta_slow",
                                           "mscale", "mscale_all_dim")}
        summary["yarn"]["truncate"] = rope.get("truncate", True)  # transformers' default
        summary["yarn"]["correction_range"] = [max(math.floor(correction_dim(rope["beta_fast"])), 0),
                                               min(math.ceil(correction_dim(rope["beta_slow"])), dim - 1)]
        # Per frequency pair: 1 = the unscaled (extrapolated) frequency, 0 = divided by factor.
        summary["yarn"]["extrapolation_weight"] = [
            (f - e / factor) / (e - e / factor) for f, e in zip(summary["inv_freq"], extrapolation)]
    return summary


@torch.no_grad()
def assert_same_model(expected, actual, probe, what):
    """Bitwise-equal persistent tensors, rotary buffers (computed from the config, not
    saved), attention and rotary scales, and logits."""
    want, got = expected.state_dict(), actual.state_dict()
    assert want.keys() == got.keys(), f"{what}: tensor names differ: {set(want) ^ set(got)}"
    for key in want:
        assert want[key].dtype == got[key].dtype and torch.equal(want[key], got[key]), f"{what}: {key} differs"
    if hasattr(expected.model, "rotary_emb"):  # Kimi-Linear has no rotary at all
        for (key, a), (_, b) in zip(expected.model.rotary_emb.named_buffers(), actual.model.rotary_emb.named_buffers()):
            assert torch.equal(a, b), f"{what}: rotary {key} differs"
        assert expected.model.rotary_emb.attention_scaling == actual.model.rotary_emb.attention_scaling, what
    assert first_attention(expected).scaling == first_attention(actual).scaling, what
    assert torch.equal(expected(probe).logits, actual(probe).logits), f"{what}: logits differ"


@torch.no_grad()
def check_auto_reference(model, prompt):
    """The auto patch must (a) with threshold 1.0 reproduce transformers' own routers —
    the same experts, bitwise-equal weights and logits (two documented exceptions: exact
    ties at the K-th place, and ulp-level weights when GLM's unsorted top-k sums K >= 3
    weights in another order) — and (b) give the same logits whether dropped experts
    carry weight 0 or are skipped outright. (b) holds to rounding only: a dropped expert
    contributes exactly 0, but still runs its GEMM on more rows, and BLAS blocking depends
    on the row count. Returns what was established."""
    kmax = model.config.num_experts_per_tok
    probe = torch.tensor([prompt])
    with RouterRecorder(model, kmax) as plain:
        expected = model(probe).logits
    ties, exact = 0, True
    for layer, hidden, i0, w0, _ in plain.captures:
        # Router by router on the inputs transformers' own router received.
        gate = router_of(model.model.layers[layer])
        hidden = hidden.to(model.dtype)
        _, w1, i1 = auto_forward(gate, 1.0, kmax)(hidden)
        gate.__dict__.pop("_jindou_auto_mask", None)
        # Exact ties at the K-th place (bf16 router logits are coarse enough to tie) are
        # broken by torch.topk in an unspecified order, by Jindou's rule to the lower index.
        _, _, choice, _ = routing(gate, hidden)
        ordered = choice.sort(dim=-1, descending=True).values
        untied = (ordered[:, kmax - 1] != ordered[:, kmax] if kmax < ordered.shape[-1]
                  else torch.ones(len(i0), dtype=torch.bool))
        ties += int((~untied).sum())
        s0, s1 = i0[untied].sort(dim=-1), i1[untied].sort(dim=-1)
        assert torch.equal(s0.values, s1.values), f"auto(1.0) chose other experts in layer {layer}"
        a, b = w0[untied].gather(1, s0.indices), w1[untied].float().gather(1, s1.indices)
        # Normalising sums the K weights; Glm4MoeTopkRouter's topk(sorted=False) may hand
        # them over in another order than descending, so for K >= 3 an ulp may differ.
        assert torch.allclose(a, b, rtol=1e-6, atol=0), f"auto(1.0) weights differ in layer {layer}"
        exact &= torch.equal(a, b)
    with Patch(model, auto=1.0):
        actual = model(probe).logits
    if ties:
        print(f"  note: {ties} exact router ties at the K-th place; auto(1.0) compared on the other tokens",
              file=sys.stderr)
    elif exact:
        assert torch.equal(expected, actual), "auto(1.0) logits differ from the configured top-k"
    else:
        assert torch.allclose(expected, actual, rtol=0, atol=1e-5), "auto(1.0) logits differ from the configured top-k"
    if any(is_gpt_oss(r) or is_longcat(r) for r in routers(model)):
        # GptOssExperts one-hot encodes the indices over num_experts classes: a sentinel
        # index cannot be expressed, so only the weight-0 form exists there.
        return {"bitwise": exact and not ties, "exact_ties": ties, "zero_weight_vs_skip": None}
    with Patch(model, auto=0.6):
        zero_weight = model(probe).logits
    with Patch(model, auto=0.6, sentinel=True):
        skipped = model(probe).logits
    difference = float((zero_weight.float() - skipped.float()).abs().max())
    bound = 1e-4 if model.dtype == torch.float32 else 0.1
    assert difference <= bound, f"weight-0 padding differs from skipping the experts by {difference}"
    return {"bitwise": exact and not ties, "exact_ties": ties, "zero_weight_vs_skip": difference}


@torch.no_grad()
def grouped_mm_difference(model, prompt, k=None) -> float | None:
    """Max |Δlogit| between transformers' default experts implementation (grouped_mm sums a
    token's experts in routing order, eager in expert order) and eager, at K (None: configured)."""
    probe = torch.tensor([prompt])
    with Patch(model, k=k):
        eager = model(probe).logits
        try:
            model.set_experts_implementation("grouped_mm")
        except (ValueError, ImportError):
            return None
        try:
            return float((model(probe).logits.float() - eager.float()).abs().max())
        finally:
            model.set_experts_implementation("eager")


def routing_differences(meta, selections, ref_meta, ref_selections) -> dict:
    """(token × layer) expert sets that differ between two golden runs, over router calls
    whose contexts agree (a case's decode steps only count while its greedy tokens agree)."""
    differing = compared = 0
    for case, ref, calls, ref_calls in zip(meta["cases"], ref_meta["cases"], selections, ref_selections):
        agree = case["greedy_new_tokens"] == ref["greedy_new_tokens"]
        layers = len({layer for layer, _ in calls})
        for n, ((_, a), (_, b)) in enumerate(zip(calls, ref_calls)):
            if n >= layers and not agree:  # past the prefill of a diverging case
                break
            differing += int((a != b).any(dim=-1).sum())
            compared += a.shape[0]
    return {"differing": differing, "compared": compared}


@torch.no_grad()
def count_bias_changes(model, prompts) -> tuple[int, int]:
    """(token×layer selections that e_score_correction_bias changes, selections checked)
    over the prefill of the three default prompts at the configured K."""
    changed = checked = 0
    kmax = model.config.num_experts_per_tok
    for key in ("short", "medium", "long"):
        with RouterRecorder(model, kmax) as recorder:
            model(torch.tensor([prompts[key]]))
        for layer_index, hidden, indices, _, _ in recorder.captures:
            gate = router_of(model.model.layers[layer_index])
            _, _, unbiased, _ = routing(gate, hidden, bias=torch.zeros_like(correction_bias(gate)))
            plain = descending(unbiased, kmax).sort(dim=-1).values
            changed += int((indices.sort(dim=-1).values != plain).any(dim=-1).sum())
            checked += indices.shape[0]
    return changed, checked


def comparable_logit_difference(meta, tensors, ref_meta, ref_tensors) -> float:
    """Max |Δlogit| between two golden sets over rows computed from identical contexts:
    all prefill rows, and generated rows up to the first step where the greedy tokens part."""
    worst = 0.0
    for case, ref in zip(meta["cases"], ref_meta["cases"]):
        i = case["index"]
        worst = max(worst, float((tensors[f"case{i}.prefill_logits"] - ref_tensors[f"case{i}.prefill_logits"]).abs().max()))
        same = next((s for s, (a, b) in enumerate(zip(case["greedy_new_tokens"], ref["greedy_new_tokens"])) if a != b),
                    len(case["greedy_new_tokens"]) - 1)
        rows = slice(0, same + 1)  # row s depends on tokens[:s] only
        worst = max(worst, float((tensors[f"case{i}.generated_logits"][rows]
                                  - ref_tensors[f"case{i}.generated_logits"][rows]).abs().max()))
    return worst


@torch.no_grad()
def write_fixture(spec: Spec, root: str, templates: dict) -> dict:
    out_dir = os.path.join(root, spec.name)
    shutil.rmtree(out_dir, ignore_errors=True)
    model = build_model(spec)
    prompts = prompts_for(spec, model.config.vocab_size)
    probe = torch.tensor([prompts["medium"]])
    if spec.dtype != torch.float32:
        # .to() also rounds the rotary inv_freq buffers; a loaded model computes them in
        # fp32 (they are not saved), so keep them fp32 to compare like with like.
        rotary = {n: b.clone() for n, b in model.model.rotary_emb.named_buffers()}
        model = model.to(spec.dtype)
        for n, b in rotary.items():
            setattr(model.model.rotary_emb, n, b)
    model.save_pretrained(out_dir, **({"max_shard_size": spec.max_shard_size} if spec.max_shard_size else {}))
    family = {"qwen3_moe": "qwen3", "qwen3_next": "qwen3", "glm4_moe": "glm4", "gpt_oss": "gpt_oss", "minimax_m2": "minimax_m2"}.get(spec.architecture)
    if family:  # DeepSeek-family fixtures carry no tokenizer
        fixture_text.write_model_tokenizer(out_dir, family, model.config.vocab_size, templates[family])
    extra_meta = {}
    unquantised = None
    if spec.fp8_block:
        # The fp32 checkpoint as written, kept as the unquantised comparison; then the
        # checkpoint is rewritten in FP8 and the in-memory model takes the dequantised
        # weights, which is what the goldens are computed from.
        unquantised = load(out_dir, torch.float32)
        assert_same_model(model, unquantised, probe, f"{spec.name} unquantised reload")
        dequantised, weight_error = quantise_checkpoint(out_dir, spec.fp8_block)
        for name, tensor in dequantised.items():
            set_checkpoint_tensor(model, name, tensor)
        extra = dict(spec.extra_config, quantization_config={
            "quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
            "weight_block_size": [spec.fp8_block, spec.fp8_block]})
        spec = replace(spec, extra_config=extra)
    if spec.mxfp4:
        write_mxfp4_experts(spec, out_dir, model)
        spec = replace(spec, extra_config=dict(spec.extra_config, quantization_config=MXFP4_QUANTIZATION))
    assert not (spec.mtp_layers and spec.fp8_block), "MTP tensors would stay unquantised"
    mtp_names = write_mtp_layers(spec, out_dir) if spec.mtp_layers else []
    qwen_mtp_names = write_qwen3_next_mtp(spec, out_dir) if spec.qwen_mtp else []
    if spec.architecture == "kimi_linear":
        kimi_linear_hub_names(out_dir, model.config)
    if spec.legacy_config or spec.extra_config:  # otherwise config.json stays as transformers wrote it
        rewrite_config(os.path.join(out_dir, "config.json"), spec.legacy_config, spec.extra_config)
    shards = shard_files(out_dir)
    if spec.max_shard_size:
        assert os.path.exists(os.path.join(out_dir, "model.safetensors.index.json")), "no index written"
        assert len(shards) >= spec.min_shards, f"{spec.name}: only {len(shards)} shards"

    # Goldens come from the checkpoint as transformers reloads it, which must equal the
    # in-memory model (proves the files, and any rewritten config, are faithful).
    reloaded = load(out_dir, spec.dtype)
    assert_same_model(model, reloaded, probe, f"{spec.name} reload")
    auto_check = check_auto_reference(reloaded, prompts["long"])
    if spec.architecture == "deepseek_v3":
        extra_meta["config_model_type"] = read_config(out_dir)["model_type"]
        extra_meta["rope"] = rope_summary(reloaded)
        if extra_meta["config_model_type"] in LOAD_AS:
            extra_meta["loaded_as_model_type"] = LOAD_AS[extra_meta["config_model_type"]]
            extra_meta["transformers_kimi_k2_loading"] = kimi_loading_report(out_dir)
        if mtp_names:
            extra_meta["mtp"] = check_mtp_layers(reloaded, out_dir, mtp_names)
        if spec.fp8_block:
            extra_meta["fp8"] = fp8_summary(out_dir, read_config(out_dir))
            extra_meta["fp8"]["weight_relative_rms_error"] = weight_error

    meta, tensors, selections = make_goldens(reloaded, spec, prompts)
    if mtp_names:
        mtp_meta, mtp_tensors = mtp_goldens(reloaded, prompts["medium"])
        extra_meta["mtp"]["goldens"] = mtp_meta
        tensors.update(mtp_tensors)
    if qwen_mtp_names:
        mtp_meta, mtp_tensors = qwen3_next_mtp_goldens(reloaded, out_dir, prompts["medium"])
        extra_meta["mtp"] = {"goldens": mtp_meta}
        tensors.update(mtp_tensors)
    meta.update(extra_meta)
    meta["max_abs_logit_diff_grouped_mm"] = max(
        grouped_mm_difference(reloaded, prompts["long"], k) or 0.0 for k in {None, max(spec.k_overrides, default=None)})
    # auto(1.0) vs transformers' routers: bitwise unless exact ties or summation order.
    meta["auto_reference_check"] = auto_check
    if spec.architecture in ("deepseek_v32", "glm_moe_dsa"):
        meta["index_topk_min_gap"] = index_topk_min_gap(reloaded, prompts)
    meta["shards"] = len(shards)
    if spec.architecture in ("glm4_moe", "deepseek_v3", "minimax_m2", "dots1", "glm4_moe_lite", "ernie4_5_moe", "exaone_moe",
                             "afmoe", "glm_moe_dsa", "longcat_flash"):
        meta["bias_changed_selections"], meta["bias_checked_selections"] = count_bias_changes(reloaded, prompts)

    if unquantised is not None:
        # Informational: the quantisation error, against the unquantised fp32 model.
        ref_meta, ref_tensors, ref_selections = make_goldens(unquantised, spec, prompts)
        meta["max_abs_logit_diff_vs_unquantised"] = comparable_logit_difference(meta, tensors, ref_meta, ref_tensors)
        meta["greedy_tokens_equal_unquantised"] = all(a["greedy_new_tokens"] == b["greedy_new_tokens"]
                                                      for a, b in zip(meta["cases"], ref_meta["cases"]))
        meta["routing_differences_vs_unquantised"] = routing_differences(meta, selections, ref_meta, ref_selections)

    if spec.dtype != torch.float32:
        # The same weights widened exactly to fp32 and run in fp32: what Jindou computes.
        # The low-precision run above is what a transformers user would see.
        upcast = load(out_dir, torch.float32)
        for key, value in reloaded.state_dict().items():
            assert torch.equal(value.float(), upcast.state_dict()[key].float()), f"upcast changed {key}"
        ref_meta, ref_tensors, ref_selections = make_goldens(upcast, spec, prompts)
        write_goldens(out_dir, "golden-f32ref", ref_meta, ref_tensors)
        meta["max_abs_logit_diff_vs_f32ref"] = comparable_logit_difference(meta, tensors, ref_meta, ref_tensors)
        meta["greedy_tokens_equal_f32ref"] = all(a["greedy_new_tokens"] == b["greedy_new_tokens"]
                                                 for a, b in zip(meta["cases"], ref_meta["cases"]))
        # Routing decisions the low-precision run makes differently (near-ties that bf16
        # rounding flips): the usual cause of the largest logit differences.
        meta["routing_differences_vs_f32ref"] = routing_differences(meta, selections, ref_meta, ref_selections)
        # Low-precision logits tie often (8-bit mantissa); separation is judged on the reference.
        meta["f32ref_min_top_gap"] = minimum(c["min_top_gap"] for c in ref_meta["cases"])
        meta["f32ref_min_routing_margin"] = minimum(c["min_routing_margin"] for c in ref_meta["cases"])
    write_goldens(out_dir, "golden", meta, tensors)
    return meta


def fp8_summary(out_dir, config) -> dict:
    """What the FP8 checkpoint holds, for golden.json."""
    block, tensors = fp8_block(config), load_all(out_dir)
    quantised = [n for n, t in tensors.items() if t.dtype == torch.float8_e4m3fn]
    partial = [n for n in quantised if any(d % block for d in tensors[n].shape)]
    return {"weight_block_size": [block, block], "quantised_tensors": len(quantised),
            "with_partial_blocks": len(partial),
            "f32_tensors": sum(t.dtype == torch.float32 and not n.endswith("_scale_inv") for n, t in tensors.items()),
            "reference": "transformers fp32 on fp8.float() * scale_inv expanded per block",
            "transformers_fp8_dequantize": transformers_fp8_dequantise_check(out_dir, config)}


# ---------------------------------------------------------------------------------------
# Seed search and summary

def separation(meta) -> dict:
    """The smallest margins of a golden set (for low precision: of its fp32 reference)."""
    cases = meta["cases"]
    result = {
        "top_gap": meta.get("f32ref_min_top_gap", minimum(c["min_top_gap"] for c in cases)),
        "routing_margin": meta.get("f32ref_min_routing_margin", minimum(c["min_routing_margin"] for c in cases)),
        "group_margin": minimum(c["min_group_margin"] for c in cases),
        "auto_margin": minimum(c["min_auto_threshold_margin"] for c in cases),
    }
    return result


def problems(meta) -> list[str]:
    """Why a golden set is not well separated (empty when it is)."""
    s, found = separation(meta), []
    if s["top_gap"] is not None and s["top_gap"] < MIN_TOP_GAP:
        found.append(f"top-1/top-2 logit gap {s['top_gap']:.2e} < {MIN_TOP_GAP:g}")
    for key in ("routing_margin", "group_margin", "auto_margin"):
        if s[key] is not None and s[key] < MIN_ROUTING_MARGIN:
            found.append(f"{key.replace('_', ' ')} {s[key]:.2e} < {MIN_ROUTING_MARGIN:g}")
    if meta.get("bias_changed_selections") == 0:
        found.append("e_score_correction_bias changes no selection")
    if meta["dtype"] != "float32" and any(c["min_routing_margin"] == 0 or c["min_group_margin"] == 0
                                          for c in meta["cases"]):
        found.append("exact router ties in the low-precision run (transformers breaks them arbitrarily)")
    if meta.get("greedy_tokens_equal_f32ref") is False:
        found.append("low-precision greedy tokens differ from the fp32 reference")
    if meta.get("index_topk_min_gap") is not None and meta["index_topk_min_gap"] < MIN_ROUTING_MARGIN:
        found.append(f"sparse-attention indexer k-th/(k+1)-th score gap {meta['index_topk_min_gap']:.2e} "
                     "(a near-tie: torch.topk and Jindou could choose differently; exact ties it breaks in no documented order)")
    return found


def index_topk_min_gap(model, prompts) -> float | None:
    """DeepSeek-V3.2 and GLM-5: the smallest gap between the index_topk-th and the next index score
    over every query of every prompt, prefill and 12 decode steps (None without an indexer).
    Exact ties there (ReLU makes scores of exactly 0) are chosen by torch.topk in an order it
    does not define, so a fixture needs a positive gap to be a reference."""
    from transformers.models.deepseek_v32 import modeling_deepseek_v32 as v32
    from transformers.models.glm_moe_dsa import modeling_glm_moe_dsa as glm5
    if not any(isinstance(mod, (v32.DeepseekV32Indexer, glm5.GlmMoeDsaIndexer)) for mod in model.modules()):
        return None
    gaps, original = [], torch.Tensor.topk

    def recording_topk(self, k, dim=-1, *args, **kwargs):
        if self.dim() == 3 and self.shape[-1] > k:  # the indexer's [B, S, T] scores
            ordered = self.sort(dim=dim, descending=True).values
            # Masked (future) positions carry -inf or finfo.min; a k-th value among them is not a choice.
            kth = ordered[..., k - 1]
            gap = (kth - ordered[..., k])[kth > torch.finfo(self.dtype).min / 2]
            if gap.numel():
                gaps.append(float(gap.min()))
        return original(self, k, dim, *args, **kwargs)

    torch.Tensor.topk = recording_topk
    try:
        with torch.no_grad():
            for ids in prompts.values():
                model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)
    finally:
        torch.Tensor.topk = original
    return min(gaps) if gaps else None


def write_separated_fixture(spec: Spec, root: str, templates: dict, writer=None) -> dict:
    """Tries seeds spec.seed, spec.seed + 1000, … until the goldens are well separated;
    otherwise rewrites the attempt with the fewest problems (deterministic, so equal).
    `writer` (default write_fixture) writes one attempt and returns its golden metadata."""
    writer = writer or write_fixture
    base, attempts = spec.seed, []
    for attempt in range(SEED_ATTEMPTS):
        seed = base + 1000 * attempt
        meta = writer(replace(spec, seed=seed), root, templates)
        found = problems(meta)
        if not found:
            return meta
        attempts.append((len(found), attempt, seed))
        print(f"  {spec.name} seed {seed}: {'; '.join(found)}; trying another seed", file=sys.stderr)
    _, _, seed = min(attempts)
    meta = writer(replace(spec, seed=seed), root, templates)
    for problem in problems(meta):
        print(f"  warning: {spec.name} (seed {seed}): {problem}", file=sys.stderr)
    return meta


# Chat templates rendered into templates/goldens.json, with the tokenizer whose special tokens
# apply_chat_template passes them (templates of families without a tokenizer fixture: Qwen3's,
# whose bos/eos those templates do not use).
TEMPLATE_GOLDENS = {"qwen3": "qwen3-moe-tiny", "glm4": "glm4-moe-tiny", "gpt_oss": "gpt-oss-tiny",
                    "minimax_m2": "minimax-m2-tiny", "glm4_moe_lite": "glm4-moe-tiny",
                    # Hunyuan-A13B's template writes its special tokens as text (no bos/eos variables).
                    "hunyuan_a13b": "qwen3-moe-tiny",
                    # The DeepSeek and Kimi tokenizers tools/fixture_gguf.py stages (their bos_token).
                    "deepseek_v31": "gguf/tokenizers/deepseek", "deepseek_v32": "gguf/tokenizers/deepseek",
                    "kimi_k2": "gguf/tokenizers/kimi", "kimi_k2_thinking": "gguf/tokenizers/kimi"}


def write_template_goldens(root, templates):
    fixture_text.write_template_goldens(root, {f: templates[f] for f in TEMPLATE_GOLDENS},
                                        {f: os.path.join(root, d) for f, d in TEMPLATE_GOLDENS.items()})


# The configuration class of every family Jindou reads, by model_type: what a config.json
# that leaves a key out means (configs/defaults.json).
CONFIG_CLASSES = {
    "qwen3_moe": "Qwen3MoeConfig", "glm4_moe": "Glm4MoeConfig", "deepseek_v3": "DeepseekV3Config",
    "minimax_m2": "MiniMaxM2Config", "dots1": "Dots1Config", "hunyuan_v1_moe": "HunYuanMoEV1Config",
    "glm4_moe_lite": "Glm4MoeLiteConfig", "ernie4_5_moe": "Ernie4_5_MoeConfig", "exaone_moe": "ExaoneMoeConfig",
    "gpt_oss": "GptOssConfig", "afmoe": "AfmoeConfig", "deepseek_v32": "DeepseekV32Config",
    "glm_moe_dsa": "GlmMoeDsaConfig", "longcat_flash": "LongcatFlashConfig",
}

# GLM-5's indexer schedules as GlmMoeDsaConfig.__post_init__ derives them.
GLM5_INDEXER_SCHEDULES = [
    dict(num_hidden_layers=8),
    dict(num_hidden_layers=8, index_topk_freq=2),
    dict(num_hidden_layers=9, index_topk_freq=3, index_skip_topk_offset=1),
    dict(num_hidden_layers=7, index_topk_freq=2, index_skip_topk_offset=0),
    dict(num_hidden_layers=5, index_topk_pattern="FSSFS"),
    dict(num_hidden_layers=78, index_topk_freq=4, index_skip_topk_offset=3),
]


def write_config_fixtures(root):
    """configs/defaults.json: each family's config class with no arguments, as to_dict()
    writes it (every default made explicit), so a test can check that a config.json leaving
    keys out describes the same model; configs/glm5_indexer_types.json: the schedules."""
    directory = os.path.join(root, "configs")
    os.makedirs(directory, exist_ok=True)
    defaults = {}
    for model_type, name in CONFIG_CLASSES.items():
        config = getattr(transformers, name)().to_dict()
        config.pop("transformers_version", None)
        defaults[model_type] = config
    schedules = [{"config": kwargs, "indexer_types": GlmMoeDsaConfig(**kwargs).indexer_types}
                 for kwargs in GLM5_INDEXER_SCHEDULES]
    for file, value in (("defaults.json", defaults), ("glm5_indexer_types.json", schedules)):
        with open(os.path.join(directory, file), "w") as f:
            json.dump({"transformers": transformers.__version__, "configs": value}, f, indent=1, sort_keys=True)
            f.write("\n")


def directory_size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "Tests", "Fixtures"),
                        help="fixture root (default: Tests/Fixtures of this repository)")
    parser.add_argument("--unseen", metavar="DIR", help="write the unseen cross-check checkpoints here instead")
    parser.add_argument("--seed", type=int, default=0, help="offset added to every fixture seed")
    parser.add_argument("--only", metavar="NAMES", help="comma-separated fixture names: write only these "
                        "(and not the tokenizer/template fixtures)")
    parser.add_argument("--templates-only", action="store_true",
                        help="rewrite only templates/ (the chat templates and their apply_chat_template goldens)")
    parser.add_argument("--configs-only", action="store_true",
                        help="rewrite only configs/ (each family's config class defaults, GLM-5's indexer schedules)")
    args = parser.parse_args()
    root = os.path.abspath(args.unseen or args.out)
    os.makedirs(root, exist_ok=True)
    if args.configs_only:
        write_config_fixtures(root)
        return

    assets = fixture_text.fetch_llama_cpp_assets(
        os.path.join(os.environ.get("TMPDIR", "/tmp"), "jindou-llama-cpp-assets"))
    templates = {}
    for family in list(fixture_text.TEMPLATE_FILES) + list(fixture_text.VLLM_TEMPLATE_FILES):
        with open(assets[family]) as f:
            templates[family] = f.read()
    if args.templates_only:
        write_template_goldens(root, templates)
        return

    rows = []
    specs = fixture_specs(args.seed, unseen=bool(args.unseen))
    writers = {}
    if not args.unseen:  # Qwen3-VL-MoE: fixture_vision.py writes the model, processor, images and goldens
        vision = fixture_vision.spec(args.seed)
        specs.append(vision)
        writers[vision.name] = fixture_vision.write_fixture
        qwen35 = fixture_vision.spec(args.seed, fixture_vision.QWEN35)
        specs.append(qwen35)
        writers[qwen35.name] = fixture_vision.write_fixture
        kimi = fixture_kimi_vision.spec(args.seed)
        specs.append(kimi)
        writers[kimi.name] = fixture_kimi_vision.write_fixture
    if args.only:
        wanted = set(args.only.split(","))
        assert wanted <= {s.name for s in specs}, f"unknown fixtures: {wanted - {s.name for s in specs}}"
        specs = [s for s in specs if s.name in wanted]
    for spec in specs:
        meta = write_separated_fixture(spec, root, templates, writers.get(spec.name))
        rows.append((spec.name, meta))

    if not args.unseen and not args.only:
        write_config_fixtures(root)
        fixture_text.write_tokenizer_fixtures(root)
        write_template_goldens(root, templates)

    print()
    print(f"{'fixture':24} {'seed':>5} {'files':>5} {'size':>7} {'shards':>6} {'min gap':>9} {'min margin':>10} "
          f"{'group':>9} {'auto':>9} {'bias Δ':>8} {'grouped_mm Δ':>12}")
    for name, meta in rows:
        directory = os.path.join(root, name)
        s = separation(meta)
        bias = (f"{meta['bias_changed_selections']}/{meta['bias_checked_selections']}"
                if "bias_changed_selections" in meta else "-")

        def fmt(x):
            return "-" if x is None else f"{x:.2e}"
        print(f"{name:24} {meta['seed']:5} {len(os.listdir(directory)):5} {directory_size(directory) / 1024:6.0f}K "
              f"{meta['shards']:6} {fmt(s['top_gap']):>9} {fmt(s['routing_margin']):>10} {fmt(s['group_margin']):>9} "
              f"{fmt(s['auto_margin']):>9} {bias:>8} {fmt(meta['max_abs_logit_diff_grouped_mm']):>12}")
        if "max_abs_logit_diff_vs_f32ref" in meta:
            print(f"{'':24} {meta['dtype']} run vs fp32-upcast run: max |Δlogit| "
                  f"{meta['max_abs_logit_diff_vs_f32ref']:.3e}, greedy tokens equal: "
                  f"{meta['greedy_tokens_equal_f32ref']}, routing decisions differing: "
                  f"{meta['routing_differences_vs_f32ref']['differing']}/"
                  f"{meta['routing_differences_vs_f32ref']['compared']}")
        if "rope" in meta:
            r = meta["rope"]
            print(f"{'':24} rope {r['rope_type']}{' interleaved' if r['rope_interleave'] else ''}: "
                  f"attention factor {r['attention_factor']:.7g}, softmax scale {r['softmax_scale']:.7g} "
                  f"(× {r['softmax_scale_multiplier']:.7g}), inv_freq {[float(f'{f:.4g}') for f in r['inv_freq']]}")
        if "max_abs_logit_diff_vs_unquantised" in meta:
            print(f"{'':24} fp8 vs unquantised fp32: max |Δlogit| {meta['max_abs_logit_diff_vs_unquantised']:.3e}, "
                  f"greedy tokens equal: {meta['greedy_tokens_equal_unquantised']}, routing decisions differing: "
                  f"{meta['routing_differences_vs_unquantised']['differing']}/"
                  f"{meta['routing_differences_vs_unquantised']['compared']}; transformers' Fp8Dequantize: "
                  f"{meta['fp8']['transformers_fp8_dequantize']}")
    print(f"total {directory_size(root) / 1024 / 1024:.2f} MB in {root}")


if __name__ == "__main__":
    main()
