"""The Kimi-K2.5 fixture (imported by make_fixtures.py): Tests/Fixtures/kimi-k25-tiny.

- A tiny random `Kimi_K25ForConditionalGeneration` (transformers' own port of Kimi-K2.5 /
  K2.6, fp32): Kimi-K2's DeepSeek-V3 text model (MLA with q-LoRA, interleaved rotary,
  sigmoid router with a correction bias, a shared expert) and MoonViT-3D: a Conv2d patch
  embedding, a learned 8×8 position table resampled bicubically to each image's grid, a
  2-D rotary, pre-norm blocks, a final LayerNorm, 2×2 patch merging, and the
  LayerNorm → Linear → GELU → Linear projector.
- The checkpoint is written in the Hub layout of moonshotai/Kimi-K2.5 (what users
  download): `language_model.model.*` with one tensor per expert, `language_model.lm_head`,
  `vision_tower.patch_embed.*`, `vision_tower.encoder.blocks.N.{norm0,norm1,wqkv,wo,mlp.fc0,
  mlp.fc1}` with q and k rows in the original interleaved-pair rotary order,
  `mm_projector.{pre_norm,proj.0,proj.2}`, and `text_config.model_type: kimi_k2`.
  transformers' conversion (conversion_mapping.py "kimi_k25") loads it; the reload must equal
  the in-memory model bit for bit, and the goldens come from the reload. transformers'
  own save_pretrained is not used for the weights: its reverse mapping writes a layout no
  Hub checkpoint has (`language_model.model.blocks.N`, `vision_tower.encoder.patch_embed`).
- The processor: `Kimi_K25ImageProcessor` (torchvision backend, the only one it has) with
  max_patches 64 so the larger images are scaled down, a tiny Kimi tokenizer with the media
  tokens, and Kimi-K2-Instruct's chat template (llama.cpp vendors no Kimi-K2.5 template;
  this one renders an image as <|media_start|>image<|media_content|><|media_pad|><|media_end|>,
  and the processor repeats <|media_pad|> once per merged patch).
- preprocess.json + .safetensors: per image, pixel_values and image_grid_thw.
- golden.json + .safetensors: text-only, one-image, two-image chats and one at another K:
  input ids, pixel values, prefill and decode logits, vision-tower outputs, router captures,
  the greedy text.
"""

from __future__ import annotations

import json
import math
import os
import shutil

import torch
import torchvision
import transformers
from safetensors.torch import save_file
from transformers import AutoTokenizer, Kimi_K25Config, Kimi_K25ForConditionalGeneration
from transformers.models.kimi_k25.image_processing_kimi_k25 import Kimi_K25ImageProcessor
from transformers.models.kimi_k25.processing_kimi_k25 import Kimi_K25Processor
from transformers.models.kimi_k25.video_processing_kimi_k25 import Kimi_K25VideoProcessor

import fixture_text
import fixture_vision
import make_fixtures as base

NAME = "kimi-k25-tiny"
PATCH, MERGE = 14, 2
MAX_PATCHES = 64
MAX_NEW_TOKENS = 8

def text_config():  # a function: make_fixtures (DS_TINY) may still be importing this module
    return dict(base.DS_TINY, vocab_size=384, num_hidden_layers=2, first_k_dense_replace=1, q_lora_rank=48,
                n_routed_experts=8, num_experts_per_tok=2, n_group=1, topk_group=1, n_shared_experts=1,
                routed_scaling_factor=2.827, norm_topk_prob=True, rope_interleave=True,
                rope_parameters={"rope_type": "default", "rope_theta": 50000.0}, tie_word_embeddings=False,
                num_nextn_predict_layers=0)


VISION = dict(patch_size=PATCH, pos_emb_height=8, pos_emb_width=8, pos_emb_time=4, num_attention_heads=2,
              num_hidden_layers=2, hidden_size=32, intermediate_size=64, hidden_act="gelu_pytorch_tanh",
              merge_kernel_size=[MERGE, MERGE], rope_parameters={"rope_type": "axial", "rope_theta": 10000.0})


def spec(seed_offset: int = 0) -> base.Spec:
    return base.Spec(NAME, "kimi_k25", 30 + seed_offset, dict(text_config=text_config(), vision_config=VISION),
                     k_overrides=(4,), router_k=4)


# ---------------------------------------------------------------------------------------
# Processor

def image_processor():
    return Kimi_K25ImageProcessor(max_patches=MAX_PATCHES, patch_size=PATCH, merge_size=MERGE)


def write_processor(out_dir: str, vocab_size: int, template: str):
    """Tokenizer (Kimi-K2's pipeline, fixture_text) + image processor + template, saved and
    read back from those files."""
    fixture_text.write_deepseek_tokenizer(out_dir, "kimi_vl", vocab_size, template)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    Kimi_K25Processor(image_processor=image_processor(), tokenizer=tokenizer, video_processor=Kimi_K25VideoProcessor(),
                      chat_template=template).save_pretrained(out_dir)
    image_processor().save_pretrained(out_dir)
    processor = Kimi_K25Processor.from_pretrained(out_dir)
    assert processor.chat_template == template
    assert isinstance(processor.image_processor, Kimi_K25ImageProcessor) and processor.image_processor.max_patches == MAX_PATCHES
    return processor


def preprocess_goldens(processor, image_dir, names):
    ip, tensors, entries = processor.image_processor, {}, []
    for i, name in enumerate(names):
        image = fixture_vision.open_image(image_dir, name)
        out = ip(images=[image], return_tensors="pt")
        grid = out["image_grid_thw"][0].tolist()
        tensors[f"image{i}.pixel_values"] = out["pixel_values"].float().contiguous()
        tensors[f"image{i}.image_grid_thw"] = out["image_grid_thw"].to(torch.int64).contiguous()
        entries.append({"index": i, "file": f"images/{name}", "mode": image.mode, "size_hw": [image.height, image.width],
                        "image_grid_thw": grid, "patches": int(out["pixel_values"].shape[0]),
                        "image_tokens": grid[0] * grid[1] * grid[2] // MERGE ** 2})
    meta = {"generator": "tools/make_fixtures.py (fixture_kimi_vision.py)",
            "transformers_version": transformers.__version__, "torch_version": torch.__version__,
            "torchvision_version": torchvision.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "image_processor": type(ip).__name__, "backend": "torchvision", "max_patches": MAX_PATCHES,
            "patch_layout": "pixel_values [patches, 3, 14, 14], patches in raster order of the padded grid",
            "images": entries}
    return meta, tensors


# ---------------------------------------------------------------------------------------
# Model

@torch.no_grad()
def reinitialise_vision(model):
    """The vision tower and projector at scales where images move the logits."""
    for module in (model.model.vision_tower, model.model.mm_projector):
        for name, p in module.named_parameters():
            if "norm" in name and name.endswith(".weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.normal_(0, 0.1)
            elif name.endswith("position_embeddings"):
                p.normal_(0, 0.5)
            else:
                p.normal_(0, 1.0 / math.sqrt(p[0].numel()))


def build_model(s: base.Spec, tokenizer_ids: dict):
    torch.manual_seed(s.seed)
    config = Kimi_K25Config(text_config=dict(s.config["text_config"]), vision_config=dict(s.config["vision_config"]),
                            projection_hidden_size=s.config["vision_config"]["hidden_size"], tie_word_embeddings=False,
                            **tokenizer_ids)
    model = Kimi_K25ForConditionalGeneration(config)
    model.set_attn_implementation("eager")
    model.set_experts_implementation("eager")
    base.reinitialise(model, hidden=config.text_config.hidden_size)
    reinitialise_vision(model)
    return model.eval()


def interleave_rotary_rows(weight, heads):
    """PermuteForRope(inverse=True): rotate-half row order → the original interleaved pairs."""
    rows = weight.shape[0]
    half = rows // heads // 2
    shape = (heads, 2, half) + tuple(weight.shape[1:])
    return weight.reshape(shape).transpose(1, 2).reshape(weight.shape).contiguous()


@torch.no_grad()
def hub_state_dict(model) -> dict:
    """The model's tensors under Kimi-K2.5's Hub names (the inverse of conversion_mapping's kimi_k25)."""
    heads = model.config.vision_config.num_attention_heads
    out = {}
    for name, tensor in model.state_dict().items():
        t = tensor.detach().clone().contiguous()
        if name == "lm_head.weight":
            out["language_model.lm_head.weight"] = t
        elif name.startswith("model.language_model."):
            rest = "language_model.model." + name[len("model.language_model."):]
            if rest.endswith("mlp.experts.gate_up_proj"):
                stem = rest[:-len("gate_up_proj")]
                for e in range(t.shape[0]):
                    gate, up = t[e].chunk(2, dim=0)
                    out[f"{stem}{e}.gate_proj.weight"] = gate.contiguous()
                    out[f"{stem}{e}.up_proj.weight"] = up.contiguous()
            elif rest.endswith("mlp.experts.down_proj"):
                stem = rest[:-len("down_proj")]
                for e in range(t.shape[0]):
                    out[f"{stem}{e}.down_proj.weight"] = t[e].contiguous()
            else:
                out[rest] = t
        elif name.startswith("model.vision_tower.patch_embed.proj."):
            out[name.replace("model.vision_tower.", "vision_tower.")] = t
        elif name == "model.vision_tower.patch_embed.pos_emb.position_embeddings":
            out["vision_tower.patch_embed.pos_emb.weight"] = t
        elif name.startswith("model.vision_tower.final_layernorm."):
            out[name.replace("model.vision_tower.", "vision_tower.encoder.")] = t
        elif name.startswith("model.vision_tower.layers."):
            layer, rest = name[len("model.vision_tower.layers."):].split(".", 1)
            p = f"vision_tower.encoder.blocks.{layer}."
            renamed = {"norm1.": "norm0.", "norm2.": "norm1.", "attn.proj.": "wo.", "mlp.fc1.": "mlp.fc0.",
                       "mlp.fc2.": "mlp.fc1."}
            for old, new in renamed.items():
                if rest.startswith(old):
                    out[p + new + rest[len(old):]] = t
                    break
            else:
                assert rest.startswith(("attn.q_proj.", "attn.k_proj.", "attn.v_proj.")), name
        elif name.startswith("model.mm_projector."):
            rest = name[len("model.mm_projector."):]
            rest = rest.replace("in_proj.", "proj.0.").replace("out_proj.", "proj.2.")
            out["mm_projector." + rest] = t
        else:
            raise AssertionError(f"unmapped tensor {name}")
    # wqkv: q, k (interleaved rotary order again) and v stacked by rows.
    for layer in range(model.config.vision_config.num_hidden_layers):
        attn = model.model.vision_tower.layers[layer].attn
        for kind in ("weight", "bias"):
            q, k, v = (getattr(getattr(attn, n), kind).detach() for n in ("q_proj", "k_proj", "v_proj"))
            out[f"vision_tower.encoder.blocks.{layer}.wqkv.{kind}"] = torch.cat(
                [interleave_rotary_rows(q, heads), interleave_rotary_rows(k, heads), v.clone()]).contiguous()
    return out


def write_hub_checkpoint(model, out_dir):
    """config.json as transformers writes it, text_config.model_type kimi_k2 as the Hub's,
    architectures as the Hub's; the weights under the Hub's names."""
    model.config.save_pretrained(out_dir)
    model.generation_config.save_pretrained(out_dir)
    path = os.path.join(out_dir, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["text_config"]["model_type"] = "kimi_k2"
    config["architectures"] = ["KimiK25ForConditionalGeneration"]
    with open(path, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    save_file(hub_state_dict(model), os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})


@torch.no_grad()
def load(directory):
    model = Kimi_K25ForConditionalGeneration.from_pretrained(directory, dtype=torch.float32, **base.IMPLEMENTATIONS).eval()
    for tensor in list(model.parameters()) + list(model.buffers()):
        tensor.data = tensor.data.clone()
    return model


class TextView:
    """What make_fixtures' Patch, RouterRecorder and count_bias_changes expect: .model.layers,
    .config, and a call on input ids (the text model alone)."""

    def __init__(self, model):
        self.model, self.config = model.model.language_model, model.config.text_config

    def __call__(self, ids):
        return self.model(input_ids=ids)


def text_view(model):
    return TextView(model)


def messages_for_cases():
    one = [{"role": "user", "content": [{"type": "image", "image": "images/rgb-50x37.png"},
                                        {"type": "text", "text": "What is in this picture?"}]}]
    two = [{"role": "system", "content": "You are Jindou."},
           {"role": "user", "content": [{"type": "text", "text": "Compare "},
                                        {"type": "image", "image": "images/rgba-90x60.png"},
                                        {"type": "text", "text": " with "},
                                        {"type": "image", "image": "images/photo-120x180.jpg"},
                                        {"type": "text", "text": "."}]}]
    text = [{"role": "user", "content": [{"type": "text", "text": "Hi! What is a mixture of experts?"}]}]
    palette = [{"role": "user", "content": [{"type": "image", "image": "images/palette-64x64.png"},
                                            {"type": "text", "text": "Colours?"}]}]
    return [("text-only", text, None), ("one-image", one, None), ("two-images", two, None),
            ("palette-image-k4", palette, 4)]


class VisionRecorder:
    """Forward hooks on the vision tower: the patch embeddings with positions (block 0's
    input), every block's output, the final LayerNorm's output."""

    def __init__(self, tower):
        self.tower, self.outputs, self.handles = tower, {}, []

    def __enter__(self):
        def keep(key, use_input=False):
            def hook(module, inputs, output):
                self.outputs[key] = (inputs[0] if use_input else output).detach().float().clone()
            return hook
        self.handles.append(self.tower.layers[0].register_forward_hook(keep("vision_block_input", True)))
        for b, block in enumerate(self.tower.layers):
            self.handles.append(block.register_forward_hook(keep(f"vision_block{b}_output")))
        self.handles.append(self.tower.final_layernorm.register_forward_hook(keep("vision_final_norm")))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def model_inputs(processor, messages, fixture_dir):
    resolved, images = fixture_vision.with_images(messages, fixture_dir)
    rendered = processor.apply_chat_template(resolved, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[rendered], images=images or None, return_tensors="pt")
    return rendered, {k: v for k, v in inputs.items() if k not in ("attention_mask", "mm_token_type_ids")}


@torch.no_grad()
def make_goldens(model, s: base.Spec, processor, fixture_dir):
    text = text_view(model)
    kmax = text.config.num_experts_per_tok
    tensors, cases, generate_diffs = {}, [], []
    for index, (name, messages, k) in enumerate(messages_for_cases()):
        rendered, inputs = model_inputs(processor, messages, fixture_dir)
        ids = inputs["input_ids"]
        extra = {key: value for key, value in inputs.items() if key != "input_ids"}
        prompt = ids[0].tolist()
        with base.Patch(text, k=k):
            with base.RouterRecorder(text, k or kmax) as recorder:
                prefill, steps, tokens = base.greedy(model, prompt, MAX_NEW_TOKENS, **extra)
            generated, generate_logits = base.generate_check(model, prompt, MAX_NEW_TOKENS, **extra)
        assert generated == tokens, f"{name}: model.generate chose {generated}, the cache loop {tokens}"
        generate_diffs.append(float((generate_logits - steps).abs().max()))
        p = f"case{index}."
        tensors[p + "input_ids"] = ids[0].to(torch.int64).contiguous()
        tensors[p + "prefill_logits"] = prefill.contiguous()
        tensors[p + "generated_logits"] = steps.contiguous()
        entry = {"index": index, "name": name, "messages": messages, "rendered_prompt": rendered,
                 "prompt_ids": prompt,
                 "images": [item["image"] for m in messages if isinstance(m["content"], list)
                            for item in m["content"] if item["type"] == "image"],
                 "experts_per_token": k or kmax, "auto_threshold": None, "max_new_tokens": MAX_NEW_TOKENS,
                 "greedy_new_tokens": tokens,
                 # As served (OpenAI servers drop special tokens, as vLLM's skip_special_tokens default does).
                 "greedy_text": processor.tokenizer.decode(tokens, skip_special_tokens=True),
                 "greedy_text_with_special_tokens": processor.tokenizer.decode(tokens, skip_special_tokens=False),
                 "min_top_gap": min(base.top_gap(prefill), base.top_gap(steps)),
                 "min_routing_margin": base.minimum(recorder.margins),
                 "min_group_margin": None, "min_auto_threshold_margin": None}
        grid = inputs.get("image_grid_thw")
        if grid is not None:
            tensors[p + "pixel_values"] = inputs["pixel_values"].float().contiguous()
            tensors[p + "image_grid_thw"] = grid.to(torch.int64).contiguous()
            with VisionRecorder(model.model.vision_tower) as vision:
                features = model.model.get_image_features(inputs["pixel_values"], grid)
            tensors[p + "image_embeds"] = torch.cat(features.pooler_output).float().contiguous()
            tensors.update({p + key: value.contiguous() for key, value in vision.outputs.items()})
            entry["image_grid_thw"] = grid.tolist()
            blank = model(**dict(inputs, pixel_values=torch.zeros_like(inputs["pixel_values"]))).logits[0].float()
            entry["image_sensitivity"] = {"max_abs_logit_diff_blank_image": float((blank - prefill).abs().max()),
                                          "last_position_argmax_changed": int(blank[-1].argmax()) != int(prefill[-1].argmax())}
        cases.append(entry)

    _, inputs = model_inputs(processor, messages_for_cases()[1][1], fixture_dir)
    router_meta = []
    for k in (None, s.router_k):
        with base.Patch(text, k=k), base.RouterRecorder(text, k or kmax) as recorder:
            model(**inputs)
        for layer_index, hidden, indices, weights, mask in recorder.captures:
            j = len(router_meta)
            idx, w = base.sorted_capture(indices, weights, mask, indices.shape[1])
            tensors[f"router{j}.hidden"] = hidden.contiguous()
            tensors[f"router{j}.indices"] = idx.contiguous()
            tensors[f"router{j}.weights"] = w.float().contiguous()
            router_meta.append({"index": j, "layer": layer_index, "experts_per_token": k or kmax,
                                "auto_threshold": None, "tokens": hidden.shape[0]})
    return cases, router_meta, tensors, max(generate_diffs)


@torch.no_grad()
def assert_same_model(expected, actual, inputs, what):
    want, got = expected.state_dict(), actual.state_dict()
    assert want.keys() == got.keys(), f"{what}: tensor names differ: {set(want) ^ set(got)}"
    for key in want:
        assert torch.equal(want[key], got[key]), f"{what}: {key} differs"
    assert torch.equal(expected(**inputs).logits, actual(**inputs).logits), f"{what}: logits differ"


def tensor_inventory(model_dir) -> dict:
    from safetensors import safe_open
    with safe_open(os.path.join(model_dir, "model.safetensors"), "pt") as f:
        return {key: list(f.get_slice(key).get_shape()) for key in sorted(f.keys())
                if ".layers.1.mlp.experts." not in key or ".experts.0." in key}


@torch.no_grad()
def write_fixture(s: base.Spec, root: str, templates: dict) -> dict:
    out_dir = os.path.join(root, s.name)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    names = fixture_vision.write_images(os.path.join(out_dir, "images"))
    processor = write_processor(out_dir, s.config["text_config"]["vocab_size"], templates["kimi_k2"])
    token = processor.tokenizer.convert_tokens_to_ids
    tokenizer_ids = {"image_token_id": token("<|media_pad|>"), "vision_start_token_id": token("<|media_start|>"),
                     "vision_end_token_id": token("<|media_end|>")}
    model = build_model(s, tokenizer_ids)
    write_hub_checkpoint(model, out_dir)
    _, probe = model_inputs(processor, messages_for_cases()[2][1], out_dir)
    reloaded = load(out_dir)
    assert reloaded.config._attn_implementation == "eager"
    assert_same_model(model, reloaded, probe, f"{s.name} reload")

    pre_meta, pre_tensors = preprocess_goldens(processor, os.path.join(out_dir, "images"), names)
    base.write_goldens(out_dir, "preprocess", pre_meta, pre_tensors)

    cases, router, tensors, generate_diff = make_goldens(reloaded, s, processor, out_dir)
    config = reloaded.config
    bias_changed, bias_checked = base.count_bias_changes(
        text_view(reloaded), dict(zip(("short", "medium", "long"), (c["prompt_ids"] for c in cases))))
    meta = {
        "generator": "tools/make_fixtures.py (fixture_kimi_vision.py)",
        "transformers_version": transformers.__version__, "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "checkpoint": s.name, "architecture": "KimiK25ForConditionalGeneration", "dtype": "float32", "seed": s.seed,
        "attn_implementation": config._attn_implementation,
        "experts_implementation": config.text_config._experts_implementation,
        "eos_token_id": None, "max_abs_logit_diff_generate": generate_diff, "max_abs_logit_diff_grouped_mm": None,
        "bias_changed_selections": bias_changed, "bias_checked_selections": bias_checked,
        "image_processor": type(processor.image_processor).__name__, "image_processor_backend": "torchvision",
        "chat_template_source": "llama-cpp-python sdist (PyPI), vendor/llama.cpp/"
                                + fixture_text.TEMPLATE_FILES["kimi_k2"] + " (llama.cpp vendors no Kimi-K2.5 "
                                "template; this one renders image parts); rendered with add_generation_prompt",
        "token_ids": tokenizer_ids,
        "checkpoint_layout": "Hub (moonshotai/Kimi-K2.5) names, loaded by transformers' kimi_k25 conversion mapping; "
                             "wqkv q/k rows in interleaved-pair rotary order (PermuteForRope inverse)",
        "vision_tensors": "per image case: vision_block_input (Conv2d patches + bicubic positions), "
                          "vision_block{b}_output, vision_final_norm, image_embeds [image tokens, 64] (projector); "
                          "rows in raster patch order, images concatenated",
        "checkpoint_tensors": tensor_inventory(out_dir),
        "cases": cases, "router": router, "shards": 1,
    }
    base.write_goldens(out_dir, "golden", meta, tensors)
    return meta
