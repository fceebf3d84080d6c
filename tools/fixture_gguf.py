#!/usr/bin/env python3
"""Writes GGUF fixtures with llama.cpp's own converter (`convert_hf_to_gguf.py`), so the
tests load files Jindou did not write itself.

    /work/venv/bin/python tools/fixture_gguf.py --llama-cpp /path/to/llama.cpp

`--llama-cpp` is a llama.cpp source tree (e.g. the copy vendored in the `llama-cpp-python`
sdist on PyPI: `vendor/llama.cpp`); its `gguf-py` is used, as the converter itself does.
Needs torch, transformers and numpy (the converter's own requirements).

Writes into `Tests/Fixtures/gguf/`, all `--outtype f32` so the transformers goldens apply
wherever the file can say what the checkpoint says:
- `qwen3-moe-tiny-sharded-f32.gguf`: the all-MoE Qwen3 fixture `qwen3-moe-tiny-sharded`
  (llama.cpp's `qwen3moe` has no dense layers, so `qwen3-moe-tiny`, whose layer 1 is dense,
  is refused by the converter: "Can not map tensor 'model.layers.1.mlp.down_proj.weight'"),
  `--outtype f32`, so the fixture's transformers goldens apply unchanged.
- `glm4-moe-tiny-f32.gguf`, `glm4-moe-tiny-legacy-f32.gguf`: both GLM4-MoE fixtures
  (`glm4moe`), `--outtype f32`. Both convert as they are: a leading dense layer, shared
  experts, `exp_probs_b` correction biases; q/k norms, two expert groups and routed scaling
  2.5 in the first, attention biases in the legacy one (transformers 4.x config style,
  sharded). Both declare `num_nextn_predict_layers: 1` without the MTP layer's weights, so
  the converter writes `nextn_predict_layers = 1` and one more block in `block_count` than
  there are decoder layers, with no tensors for it; the loader must ignore that block.
- `kimi-k2-tiny-f32.gguf` (`deepseek2`): exact — q-LoRA, interleaved default rope, no YaRN.
- `deepseek-v3-tiny-f32.gguf` (`deepseek2`): not exact. The fixture's YaRN has mscale 1.0 and
  mscale_all_dim 0.707; the file carries only 0.1 · mscale_all_dim (`yarn_log_multiplier`),
  and llama.cpp assumes mscale = mscale_all_dim, i.e. a cos/sin attention factor of 1 where
  transformers uses mscale(4, 1.0) / mscale(4, 0.707) ≈ 1.037. llama.cpp's own logits on this
  file differ from the goldens by up to ~2 (and by ~2e-6 from Jindou's reading of the file).
- `deepseek-v3-tiny-noq-f32.gguf` (`deepseek2`): not exact. The fixture has
  `rope_interleave: false` (rotate-half); the converter ignores the flag and llama.cpp rotates
  adjacent pairs, so the file means the interleaved model. llama.cpp itself does not load it
  (it requires `attention.q_lora_rank` except for DeepSeek-V2-Lite's layer counts); Jindou
  does (a plain `attn_q`). The converter drops the fixture's MTP layer.
The tests compare the last two with their checkpoints changed the same way
(Tests/JindouModelTests/GGUFDeepseekTests.swift).
- `gpt-oss-tiny-mxfp4.gguf` (`gpt-oss`): the experts stay MXFP4 (the converter repacks the
  checkpoint's blocks), the rest F32. llama.cpp multiplies MXFP4 with 8-bit activation
  blocks where transformers dequantises and multiplies in float, so the reference is
  llama.cpp itself: `gpt-oss-tiny-mxfp4.llama-cpp.json` holds its last-position logits and
  greedy tokens for two prompts (tools/llama_cpp_logits.c; needs tools/llama_cpp.sh's build).
  The checkpoint uses the released swiglu_limit 7 and YaRN with truncate true, which is what
  llama.cpp computes whatever the file says.

    /work/venv/bin/python tools/fixture_gguf.py --llama-cpp "$(tools/llama_cpp.sh)" --only gpt-oss-tiny-mxfp4.gguf

Adjustments, all to the inputs or the pre-tokenizer's name, never to the converter's output:
- it identifies the BPE pre-tokenizer by hashing the token ids a known text encodes to
  (`get_vocab_base_pre`), which works for released vocabularies only. The fixtures' tiny
  vocabularies keep their family's pre-tokenizer, so when the hash is unknown this script
  names the pre-tokenizer from the Split regexes in tokenizer.json instead (`qwen2`,
  `deepseek-v3`; refusing any it does not know);
- the DeepSeek-family fixtures carry no tokenizer, so each is converted from a staged copy
  (checkpoint files linked) with a tiny tokenizer trained with DeepSeek-V3's pipeline and
  DeepSeek-V3.1's or Kimi-K2's chat template (fixture_text.write_deepseek_tokenizer; kept in
  `Tests/Fixtures/gguf/tokenizers/` with a golden of `tokenizers`' ids and transformers'
  chat renderings), and with `scoring_func: sigmoid` added to config.json where transformers
  5 left it out (DeepSeek's own config.json has it; without it the converter writes no
  `expert_gating_func` and llama.cpp scores experts with softmax). The Kimi-K2 fixture gets
  the same pipeline: Kimi's real tokenizer is tiktoken-based, which llama.cpp names
  `kimi-k2` and Jindou does not read.
Everything else — tensor names, layouts, metadata, the token list, merges, special ids, chat
template — is the converter's own output. Deterministic: the same inputs give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import runpy
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "Tests" / "Fixtures"
TOKENIZERS = FIXTURES / "gguf" / "tokenizers"

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_text  # noqa: E402  (the staged DeepSeek-family tokenizers)

# tokenizer.json pre-tokenizer regexes → llama.cpp's `tokenizer.ggml.pre` names
# (src/llama-vocab.cpp lists the regex each name stands for).
KNOWN_PRE_TOKENIZERS = {
    (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",): "qwen2",
    (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",): "glm4",
    tuple(fixture_text.DEEPSEEK_V3_PATTERNS): "deepseek-v3",
    (fixture_text.EXAONE_MOE_PATTERN,): "exaone-moe",
    tuple(fixture_text.AFMOE_PATTERNS): "afmoe",
    (fixture_text.O200K_PATTERN,): "gpt-4o",
    (fixture_text.QWEN35_PATTERN,): "qwen35",
}

CONVERSIONS = [
    # (fixture directory, output file name, --outtype, staged tokenizer family or None)
    ("qwen3-moe-tiny-sharded", "qwen3-moe-tiny-sharded-f32.gguf", "f32", None),
    ("glm4-moe-tiny", "glm4-moe-tiny-f32.gguf", "f32", None),
    ("glm4-moe-tiny-legacy", "glm4-moe-tiny-legacy-f32.gguf", "f32", None),
    ("deepseek-v3-tiny", "deepseek-v3-tiny-f32.gguf", "f32", "deepseek"),
    ("deepseek-v3-tiny-noq", "deepseek-v3-tiny-noq-f32.gguf", "f32", "deepseek"),
    ("kimi-k2-tiny", "kimi-k2-tiny-f32.gguf", "f32", "kimi"),
    # gpt-oss as llama.cpp ships it: experts MXFP4 (the converter repacks the checkpoint's
    # blocks bit for bit), the rest F32. llama.cpp multiplies MXFP4 with 8-bit activation
    # blocks, transformers in float: llama.cpp's own logits are the reference (LLAMA_GOLDENS).
    ("gpt-oss-tiny-mxfp4", "gpt-oss-tiny-mxfp4.gguf", "f32", None),
    # MiniMax-M2 (`minimax-m2`): exact — whole-projection q/k norms, rotary_dim, sigmoid with
    # the selection bias (exp_probs_b), w1/w3/w2 stacked as ffn_{gate,up,down}_exps.
    ("minimax-m2-tiny", "minimax-m2-tiny-f32.gguf", "f32", None),
    # The families below carry no tokenizer; each is staged with a tiny one of its family's
    # pre-tokenizer (fixture_text.STAGED_TOKENIZERS). llama.cpp computes some of what their
    # checkpoints say differently (see each reader in Sources/JindouModel/GGUF*.swift), so
    # the reference is llama.cpp itself (LLAMA_GOLDENS).
    # dots.llm1 (`dots1`): llama.cpp's loader wants as many key/value heads as query heads (as
    # released) and has no sliding windows or expert groups for it: `dots1-tiny-mha` is that model.
    ("dots1-tiny-mha", "dots1-tiny-mha-f32.gguf", "f32", "dots1"),
    # K-EXAONE (`exaone-moe`): sliding/global layers with NoPE globals, grouped sigmoid router.
    # llama.cpp refuses a file without `expert_gating_func`, which the converter writes from the
    # config's `scoring_func`; transformers' ExaoneMoeConfig has no such key, so it is staged.
    ("exaone-moe-tiny", "exaone-moe-tiny-f32.gguf", "f32", "exaone-moe"),
    # Trinity (`afmoe`): llama.cpp fixes three sliding layers then one global NoPE layer, as
    # released (`afmoe-tiny-every4`; afmoe-tiny's every-second-layer pattern is not what a file
    # can say), with a tokenizer of Trinity's pipeline (llama.cpp's `afmoe` pre-tokenizer:
    # digits in threes from the right).
    ("afmoe-tiny-every4", "afmoe-tiny-every4-f32.gguf", "f32", "afmoe"),
    # GLM-4.7-Flash (`deepseek2`, as llama.cpp's converter files it): the dense first layer as
    # `first_k_dense_replace` (which the Hub's config.json has beside mlp_layer_types), sigmoid
    # routing; GLM's tokenizer pipeline and its released template.
    ("glm4-moe-lite-tiny-lead", "glm4-moe-lite-tiny-lead-f32.gguf", "f32", "glm4"),
    # Hunyuan-A13B (`hunyuan-moe`): the converter's NTK-alpha becomes a plain rope base; it
    # asserts the released shape (head width 128 from hidden/heads, alpha 1000, base 10000,
    # 32k or 256k positions: `hunyuan-moe-tiny-128`) and per-layer moe_topk lists (staged).
    # Its vocabulary code reads the released tiktoken tokenizer through remote code and fixes
    # BOS at id 127959, which a tiny vocabulary cannot have, so the staged byte-level BPE
    # tokenizer is written with the converter's generic BPE vocabulary writer
    # (`get_vocab_base` + SpecialVocab, as Exaone4Model.set_vocab does) and named `hunyuan`.
    ("hunyuan-moe-tiny-128", "hunyuan-moe-tiny-128-f32.gguf", "f32", "hunyuan"),
    # ERNIE-4.5-MoE (`ernie4_5-moe`): a SentencePiece vocabulary (tokenizer.model, llama.cpp's
    # `llama` tokenizer), the shared experts' width as intermediate_size / num_key_value_heads
    # (`ernie45-moe-tiny-ff64`, where that is the checkpoint's), interleaved rotary as stored.
    ("ernie45-moe-tiny-ff64", "ernie45-moe-tiny-ff64-f32.gguf", "f32", "ernie"),
    # DeepSeek-V3.2 (`deepseek32`) and GLM-5 (`glm-dsa`): the sparse-attention indexer's
    # tensors and its head count, key width and top-k; GLM-5's per-layer indexer types.
    ("deepseek-v32-tiny", "deepseek-v32-tiny-f32.gguf", "f32", "deepseek"),
    ("glm-moe-dsa-tiny", "glm-moe-dsa-tiny-f32.gguf", "f32", "glm4"),
    # Qwen3-Next (`qwen3next`): every layer MoE, as llama.cpp requires; the converter splits
    # in_proj_qkvz into attn_qkv and attn_gate, keeps in_proj_ba grouped (ssm_ba), stores
    # −exp(A_log) (ssm_a) and the zero-centred norms as 1 + w. Its Qwen3 tokenizer is the
    # fixture's own. The fixture's `mtp.*` layer becomes the nextn block (blk.3: the decoder
    # layer's tensors plus nextn.{eh_proj, enorm, hnorm, shared_head_norm}). Qwen3.5's
    # checkpoint carries none (transformers drops them): converted --no-mtp, which the converter
    # otherwise refuses.
    ("qwen3-next-tiny-moe", "qwen3-next-tiny-moe-f32.gguf", "f32", None),
    # Qwen3.5-MoE (`qwen35moe`), the text model of the vision fixture (the converter writes the
    # vision tower to a separate mmproj file only when asked): in_proj_qkv/z/b/a as attn_qkv,
    # attn_gate, ssm_beta, ssm_alpha with the value heads reordered from grouped per key head to
    # tiled (value head h reads key head h mod key heads), interleaved M-RoPE sections.
    ("qwen35-moe-tiny", "qwen35-moe-tiny-f32.gguf", "f32", None),
    # Kimi-Linear (`kimi-linear`): KDA's tensors as ssm_*, MLA as deepseek2's (kv_b split into
    # k_b/v_b, one KV head for the latent cache); the Kimi-K2 staged tokenizer.
    ("kimi-linear-tiny", "kimi-linear-tiny-f32.gguf", "f32", "kimi"),
    # Ling-3.0 (`bailingmoe3`): the converter is registered for the Hub's BailingMoeV3ForCausalLM
    # (transformers names the class BailingHybridForCausalLM) and reads its remote-code keys,
    # staged; the full-attention layers follow layer_group_size (`ling-hybrid-tiny-group4`).
    ("ling-hybrid-tiny-group4", "ling-hybrid-tiny-group4-f32.gguf", "f32", "deepseek"),
]
# Converter flags beyond --outtype/--outfile.
CONVERTER_FLAGS = {"qwen35-moe-tiny-f32.gguf": ["--no-mtp"]}

# Files whose reference is llama.cpp itself: its logits and greedy tokens for these prompts
# (tools/llama_cpp_logits.c, one thread, F32 KV cache), in {file stem}.llama-cpp.json.
LLAMA_PROMPTS = [[5, 17, 201, 33, 90, 12, 250], list(range(3, 43))]
LLAMA_GOLDENS = {name: LLAMA_PROMPTS for name in ("gpt-oss-tiny-mxfp4.gguf", "dots1-tiny-mha-f32.gguf",
                                                  "exaone-moe-tiny-f32.gguf", "afmoe-tiny-every4-f32.gguf",
                                                  "glm4-moe-lite-tiny-lead-f32.gguf", "hunyuan-moe-tiny-128-f32.gguf",
                                                  "ernie45-moe-tiny-ff64-f32.gguf", "deepseek-v32-tiny-f32.gguf",
                                                  "glm-moe-dsa-tiny-f32.gguf")}
# Linear-attention files also get a prompt longer than llama.cpp's delta-net chunk (64).
LLAMA_GOLDENS["qwen3-next-tiny-moe-f32.gguf"] = LLAMA_PROMPTS + [[(7 * i) % 300 + 3 for i in range(70)]]
LLAMA_GOLDENS["qwen35-moe-tiny-f32.gguf"] = LLAMA_GOLDENS["qwen3-next-tiny-moe-f32.gguf"]
LLAMA_GOLDENS["kimi-linear-tiny-f32.gguf"] = LLAMA_GOLDENS["qwen3-next-tiny-moe-f32.gguf"]
LLAMA_GOLDENS["ling-hybrid-tiny-group4-f32.gguf"] = LLAMA_GOLDENS["qwen3-next-tiny-moe-f32.gguf"]

# Files llama-quantize makes from a converted one: (output, source, llama-quantize type).
# Qwen3-Next in Q8_0: the DeltaNet and attention projections and the experts in Q8_0 (every row
# of the tiny model is 64 wide; K-quants need 256), conv, decay, norms F32.
QUANTIZED = [("qwen3-next-tiny-moe-q8_0.gguf", "qwen3-next-tiny-moe-f32.gguf", "Q8_0")]
LLAMA_GOLDENS["qwen3-next-tiny-moe-q8_0.gguf"] = LLAMA_GOLDENS["qwen3-next-tiny-moe-f32.gguf"]

# Chat templates of the staged tokenizers, from the llama.cpp tree's models/templates.
STAGED_TEMPLATES = {"deepseek": "deepseek-ai-DeepSeek-V3.1.jinja", "kimi": "moonshotai-Kimi-K2.jinja",
                    "glm4": "GLM-4.7-Flash.jinja", "dots1": None, "exaone-moe": None, "afmoe": None,
                    "hunyuan": "hunyuan_a13b", "ernie": None}  # Tests/Fixtures/templates/hunyuan_a13b.jinja (vLLM's sdist)
DEEPSEEK_FAMILIES = ("deepseek", "kimi")
# Keys the Hub's config.json files carry (and transformers drops or writes in another form),
# which the converter needs to write what the model computes:
# - `scoring_func: sigmoid` (DeepSeek family, dots.llm1, K-EXAONE): without it the converter
#   writes no `expert_gating_func`; llama.cpp then scores with softmax (deepseek2) or refuses
#   to run (dots1, exaone-moe);
# - `first_k_dense_replace` (GLM-4.7-Flash): transformers 5 writes mlp_layer_types only;
#   the converter reads this key for leading_dense_block_count;
# - `route_norm: true` (Trinity): transformers always renormalises the chosen weights,
#   llama.cpp only when the file says so (`expert_weights_norm`, from `route_norm`).
STAGED_CONFIG = {name: {"scoring_func": "sigmoid"} for name in (
    "deepseek-v3-tiny", "deepseek-v3-tiny-noq", "kimi-k2-tiny", "dots1-tiny-mha", "exaone-moe-tiny", "deepseek-v32-tiny",
    "glm-moe-dsa-tiny")}
STAGED_CONFIG["afmoe-tiny-every4"] = {"route_norm": True}
STAGED_CONFIG["glm4-moe-lite-tiny-lead"] = {"scoring_func": "sigmoid", "first_k_dense_replace": 1}
STAGED_CONFIG["hunyuan-moe-tiny-128"] = {"moe_topk": [2, 2, 2]}  # the Hub's per-layer form
# Kimi-Linear: the converter reads the Hub's remote-code keys (`linear_attn_config` with
# 1-indexed layer lists, `first_k_dense_replace`), which transformers 5 writes as layer_types,
# linear_* and mlp_layer_types; staged from the fixture's own values (KimiLinear.swift reads both).
STAGED_CONFIG["kimi-linear-tiny"] = {"linear_attn_config": {"full_attn_layers": [2], "kda_layers": [1, 3, 4], "head_dim": 16,
                                                            "num_heads": 4, "short_conv_kernel_size": 4},
                                     "first_k_dense_replace": 1, "moe_router_activation_func": "sigmoid"}
# Ling: the Hub's class name and keys (no LoRA KDA projections, head-wise attention gates, the
# shared expert's width, the router's scoring, renormalisation and groups and the KDA head width
# (`head_dim`) under its remote-code names),
# and a model_type transformers does not register, so the converter reads config.json as it is
# (as for the Hub's remote-code checkpoint) rather than BailingHybridConfig's to_dict, which
# renames norm_topk_prob.
STAGED_CONFIG["ling-hybrid-tiny-group4"] = {"architectures": ["BailingMoeV3ForCausalLM"], "model_type": "bailing_moe_v3",
                                            "no_kda_lora": True,
                                            "gated_attention_proj_granularity_type": "head_wise",
                                            "moe_shared_expert_intermediate_size": 32, "norm_topk_prob": True,
                                            "score_function": "sigmoid", "n_group": 2, "head_dim": 16}
# `tokenizer.ggml.pre` of staged tokenizers whose regex another family shares.
STAGED_PRE = {"hunyuan-moe-tiny-128": "hunyuan"}


def pre_tokenizer_regexes(directory: Path) -> tuple[str, ...]:
    """The Split regexes of tokenizer.json's pre-tokenizer, in order."""
    tokenizer = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    pre = tokenizer.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    return tuple(step.get("pattern", {}).get("Regex") for step in steps if step.get("type") == "Split")


def write_staged_tokenizer(family: str, llama_cpp: Path, vocab_size: int) -> Path:
    """Tests/Fixtures/gguf/tokenizers/{family}: the tiny tokenizer the DeepSeek-family
    conversions are given (kept, so the tests can compare the files' tokenizer.ggml.* with it),
    and for `deepseek` a golden.json: the ids `tokenizers` gives for fixture_text's corpus and
    what transformers' apply_chat_template renders for its conversations."""
    directory = TOKENIZERS / family
    directory.mkdir(parents=True, exist_ok=True)
    template_file = STAGED_TEMPLATES[family]
    # A file of the llama.cpp tree's models/templates, or (no .jinja) one of Tests/Fixtures/templates.
    template = None if template_file is None else (
        (llama_cpp / "models" / "templates" / template_file) if template_file.endswith(".jinja")
        else FIXTURES / "templates" / f"{template_file}.jinja").read_text(encoding="utf-8")
    if family == "ernie":  # SentencePiece: llama.cpp's ids on the converted file are the reference
        fixture_text.write_sentencepiece_tokenizer(str(directory), vocab_size, fixture_text.ERNIE_ADDED,
                                                   {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
        return directory
    if family not in DEEPSEEK_FAMILIES:
        tokenizer = fixture_text.write_staged_tokenizer(str(directory), family, vocab_size, template)
        golden = fixture_text.tokenizer_golden(tokenizer, fixture_text.corpus())
        with open(directory / "golden.json", "w", encoding="utf-8") as f:
            json.dump(golden, f, ensure_ascii=False, indent=1)
        return directory
    tokenizer = fixture_text.write_deepseek_tokenizer(str(directory), family, vocab_size, template)
    if family == "deepseek":
        from transformers import AutoTokenizer
        lines = fixture_text.corpus() + ["<｜begin▁of▁sentence｜>You are helpful.<｜User｜>你好 2048<｜Assistant｜><think></think>"]
        golden = fixture_text.tokenizer_golden(tokenizer, lines)
        chat = AutoTokenizer.from_pretrained(str(directory))
        rendered = []
        for case in fixture_text.conversations():
            if case["tools"] is not None or "enable_thinking" in case["options"]:
                continue  # DeepSeek-V3.1's template has no tool list; thinking is its own variable
            try:
                text = chat.apply_chat_template(case["messages"], tokenize=False, **case["options"])
                rendered.append(dict(case, rendered=text))
            except Exception as error:  # recorded, as fixture_text's template goldens do
                rendered.append(dict(case, error=type(error).__name__))
        golden["chat"] = rendered
        with open(directory / "golden.json", "w", encoding="utf-8") as f:
            json.dump(golden, f, ensure_ascii=False, indent=1)
    return directory


def stage(fixture: Path, tokenizer: Path, into: Path, family: str) -> Path:
    """A copy of a fixture that the converter accepts: the checkpoint's files linked, the
    staged tokenizer's files linked, and config.json with the STAGED_CONFIG keys it lacks."""
    into.mkdir()
    for item in list(fixture.iterdir()) + list(tokenizer.iterdir()):
        if item.name not in ("config.json", "golden.json", "golden.safetensors"):
            (into / item.name).symlink_to(item)
    config = json.loads((fixture / "config.json").read_text(encoding="utf-8"))
    config.update(STAGED_CONFIG.get(fixture.name, {}))
    (into / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-cpp", type=Path, required=True, help="llama.cpp source tree")
    parser.add_argument("--only", help="comma-separated output file names: convert only these")
    args = parser.parse_args()
    llama_cpp = args.llama_cpp.resolve()
    converter = llama_cpp / "convert_hf_to_gguf.py"
    if not converter.is_file():
        sys.exit(f"{converter} not found")
    sys.path.insert(0, str(llama_cpp))
    sys.path.insert(1, str(llama_cpp / "gguf-py"))
    import conversion.base as base  # noqa: E402  (the converter's own package)

    original = base.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            if Path(self.dir_model).name in STAGED_PRE:
                return STAGED_PRE[Path(self.dir_model).name]
            regexes = pre_tokenizer_regexes(Path(self.dir_model))
            if regexes not in KNOWN_PRE_TOKENIZERS:
                raise
            name = KNOWN_PRE_TOKENIZERS[regexes]
            print(f"fixture_gguf: tiny vocabulary, pre-tokenizer named '{name}' from its tokenizer.json regex")
            return name

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre

    import conversion.hunyuan as hunyuan  # noqa: E402

    def staged_bpe_vocabulary(self):  # Exaone4Model.set_vocab: the converter's generic BPE writer
        tokens, toktypes, tokpre = self.get_vocab_base()
        self.gguf_writer.add_tokenizer_model("gpt2")
        self.gguf_writer.add_tokenizer_pre(tokpre)
        self.gguf_writer.add_token_list(tokens)
        self.gguf_writer.add_token_types(toktypes)
        base.gguf.SpecialVocab(self.dir_model, load_merges=True).add_to_gguf(self.gguf_writer)

    hunyuan.HunYuanMoEModel.set_vocab = staged_bpe_vocabulary

    import conversion.deepseek as deepseek  # noqa: E402

    def deepseek_v32_vocabulary(self):
        # DeepseekV32Model.set_vocab asserts `tokenizer.add_bos_token`, which transformers 5's
        # TokenizersBackend no longer sets from tokenizer_config.json (the staged one says
        # true, as the released file does; SpecialVocab writes it into the GGUF either way).
        self._set_vocab_gpt2()

    deepseek.DeepseekV32Model.set_vocab = deepseek_v32_vocabulary

    wanted = {family for fixture, name, _, family in CONVERSIONS if family and (not args.only or name in args.only.split(","))}
    sizes = {"ernie": 640}  # the vocabularies of the staged fixtures (ernie45-moe-tiny-ff64: 640)
    tokenizers = {family: write_staged_tokenizer(family, llama_cpp, sizes.get(family, 320)) for family in STAGED_TEMPLATES
                  if family in wanted}
    with tempfile.TemporaryDirectory(prefix="jindou-gguf-stage-") as staging:
        for fixture, name, outtype, family in CONVERSIONS:
            if args.only and name not in args.only.split(","):
                continue
            directory = FIXTURES / fixture
            if family:
                directory = stage(directory, tokenizers[family], Path(staging) / fixture, family)
            out = FIXTURES / "gguf" / name
            out.parent.mkdir(exist_ok=True)
            sys.argv = [str(converter), str(directory), "--outtype", outtype, "--outfile", str(out)] + CONVERTER_FLAGS.get(name, [])
            try:
                runpy.run_path(str(converter), run_name="__main__")
            except SystemExit as exit:
                if exit.code not in (None, 0):
                    raise
            print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size} bytes)")
            if name in LLAMA_GOLDENS:
                write_llama_goldens(llama_cpp, out, LLAMA_GOLDENS[name])
    for name, source, kind in QUANTIZED:
        if args.only and name not in args.only.split(","):
            continue
        out = FIXTURES / "gguf" / name
        subprocess.run([str(llama_cpp / "build" / "bin" / "llama-quantize"), str(FIXTURES / "gguf" / source), str(out), kind],
                       check=True, capture_output=True)
        print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size} bytes, llama-quantize {kind})")
        write_llama_goldens(llama_cpp, out, LLAMA_GOLDENS[name])


def write_llama_goldens(llama_cpp: Path, gguf: Path, prompts: list[list[int]]) -> None:
    """llama.cpp's answers on `gguf`: per prompt, the last prompt position's logits, the
    greedy tokens and the margins they were chosen with, and the ids its tokenizer gives
    fixture_text's corpus (fixture_gguf_mixes.Llama)."""
    import fixture_gguf_mixes
    llama = fixture_gguf_mixes.Llama(llama_cpp)
    cases = []
    for ids in prompts:
        last, tokens, margins = llama.logits(gguf, ids)
        cases.append({"prompt_ids": ids, "last_logits": [float(x) for x in last], "greedy_tokens": tokens,
                      "greedy_margins": margins})
    texts = fixture_text.corpus()
    tokenized = [{"text": t, "ids": ids} for t, ids in zip(texts, llama.tokenize(gguf, texts))]
    golden = {"generator": "tools/fixture_gguf.py", "llama_cpp": llama.version, "llama_cpp_commit": llama.commit,
              "harness": "tools/llama_cpp_logits.c (one thread, F32 KV cache; --tokenize: no BOS/EOS, special tokens parsed)",
              "cases": cases, "tokenized": tokenized}
    target = gguf.with_suffix(".llama-cpp.json")
    target.write_text(json.dumps(golden, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
