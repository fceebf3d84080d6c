"""The Qwen3-VL-MoE and Qwen3.5-MoE fixtures (imported by make_fixtures.py):
Tests/Fixtures/qwen3-vl-moe-tiny and Tests/Fixtures/qwen35-moe-tiny (`Family` below says
what differs: Qwen3.5-MoE is Qwen3-Next's text stack with split DeltaNet projections and
M-RoPE, and the vision tower without DeepStack).

- A tiny random `Qwen3VLMoeForConditionalGeneration` (fp32, save_pretrained): a 3-layer
  Qwen3-MoE-style text model with interleaved MRoPE, and a 3-block vision tower with a
  learned 8×8 position grid (interpolated to every image's grid) and DeepStack mergers.
- The processor as transformers saves it: `Qwen2VLImageProcessorPil` (the PIL backend,
  chosen explicitly: no torchvision), a tiny tokenizer with Qwen's vision tokens, and a
  real Qwen chat template that renders images (fixture_text.TEMPLATE_FILES["qwen3_vl"]).
- images/: PNG (RGB, RGBA, L, P with a transparent index) and JPEG files written here
  from numpy, sized so the processor scales some up to min_pixels and some down to
  max_pixels.
- preprocess.json + .safetensors: per image, the RGB pixels after transformers'
  convert_to_rgb, the resized pixels, pixel_values and image_grid_thw.
- golden.json + .safetensors: text-only, one-image and two-image chats (and one image at
  another K): input ids, pixel values, MRoPE position ids, prefill and decode logits,
  vision-tower outputs, router captures. Same case keys as make_fixtures' goldens.
"""

from __future__ import annotations

import math
import os
import shutil
import types

import numpy as np
import PIL
import PIL.features
import torch
import transformers
from PIL import Image
from dataclasses import dataclass

from transformers import (AutoTokenizer, Qwen3_5MoeConfig, Qwen3_5MoeForConditionalGeneration, Qwen3VLMoeConfig,
                          Qwen3VLMoeForConditionalGeneration, Qwen3VLProcessor)
from transformers.image_transforms import convert_to_rgb
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

import fixture_text
import make_fixtures as base

NAME = "qwen3-vl-moe-tiny"
PATCH, MERGE, TEMPORAL = 16, 2, 2
FACTOR = PATCH * MERGE
MIN_PIXELS, MAX_PIXELS = FACTOR * FACTOR * 4, FACTOR * FACTOR * 8  # 4 … 8 merged tokens per image
MAX_NEW_TOKENS = 8

TEXT = dict(base.TINY, vocab_size=384, moe_intermediate_size=16, num_hidden_layers=3, num_experts=8, num_experts_per_tok=2,
            decoder_sparse_step=1, mlp_only_layers=[], tie_word_embeddings=False,
            # Interleaved MRoPE as Qwen3-VL's config has it ([24, 20, 20] for head_dim 128):
            # frequency pair i takes its angle from H if i % 3 == 1 (i < 3·2), W if i % 3 == 2, else T.
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2],
                             "mrope_interleaved": True})
VISION = dict(depth=3, hidden_size=32, num_heads=2, intermediate_size=64, patch_size=PATCH,
              temporal_patch_size=TEMPORAL, spatial_merge_size=MERGE, out_hidden_size=TEXT["hidden_size"],
              num_position_embeddings=64, hidden_act="gelu_pytorch_tanh",
              # Vision blocks 1 and 2 feed text layers 0 and 1 (block index ≠ layer index on purpose).
              deepstack_visual_indexes=[1, 2])


# Qwen3.5-MoE: four layers, DeltaNet at 0, 1, 3 (split in_proj_qkv/z/b/a), gated full attention
# at 2 with partial rotary 0.5 under interleaved M-RoPE [2, 1, 1] (all three axes turn); every
# layer MoE with a sigmoid-gated shared expert; the vision tower without DeepStack.
TEXT35 = dict(vocab_size=384, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
              max_position_embeddings=256, moe_intermediate_size=16, shared_expert_intermediate_size=16,
              num_hidden_layers=4, num_experts=8, num_experts_per_tok=2,
              layer_types=["linear_attention", "linear_attention", "full_attention", "linear_attention"],
              linear_conv_kernel_dim=4, linear_key_head_dim=16, linear_value_head_dim=16, linear_num_key_heads=2,
              linear_num_value_heads=4, tie_word_embeddings=False,
              rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1],
                               "mrope_interleaved": True, "partial_rotary_factor": 0.5})
VISION35 = {k: v for k, v in VISION.items() if k != "deepstack_visual_indexes"}


@dataclass(frozen=True)
class Family:
    name: str
    model_type: str
    config_class: type
    model_class: type
    text: dict
    vision: dict
    tokenizer: str     # fixture_text's tokenizer family (its pre-tokenizer regex and added tokens)
    seed: int


QWEN3_VL = Family(NAME, "qwen3_vl_moe", Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration, TEXT, VISION, "qwen3_vl", 10)
QWEN35 = Family("qwen35-moe-tiny", "qwen3_5_moe", Qwen3_5MoeConfig, Qwen3_5MoeForConditionalGeneration, TEXT35, VISION35,
                "qwen3_5", 50)
FAMILIES = {f.name: f for f in (QWEN3_VL, QWEN35)}


def spec(seed_offset: int = 0, family: Family = QWEN3_VL) -> base.Spec:
    return base.Spec(family.name, family.model_type, family.seed + seed_offset,
                     dict(text_config=family.text, vision_config=family.vision), k_overrides=(4,), router_k=4)


# ---------------------------------------------------------------------------------------
# Images

IMAGES = [  # (file, PIL mode, width, height): what the processor does with it
    ("rgb-50x37.png", "RGB", 50, 37),          # 1850 px: up to min_pixels (96×64)
    ("rgba-90x60.png", "RGBA", 90, 60),        # rounded to 96×64, alpha composited on white
    ("gray-23x97.png", "L", 23, 97),           # aspect 4.2: up to 32×160
    ("palette-64x64.png", "P", 64, 64),        # exactly min_pixels, not resized; tRNS index → white
    ("photo-120x180.jpg", "RGB", 120, 180),    # 21600 px: down under max_pixels (64×96)
]


def picture(rng, width, height):
    """Smooth gradients, a disc, stripes and noise: float RGB in [0, 255], [H, W, 3]."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / max(width - 1, 1), y / max(height - 1, 1)
    image = np.stack([255 * u, 255 * v, 255 * (1 - u) * (0.5 + 0.5 * np.sin(6 * v))], axis=-1)
    cx, cy, r = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height, 0.3 * min(width, height)
    disc = (x - cx) ** 2 + (y - cy) ** 2 < r * r
    image[disc] = rng.uniform(0, 255, 3)
    image[(x.astype(int) // 5) % 4 == 0] *= 0.6
    return np.clip(image + rng.normal(0, 12, image.shape), 0, 255)


def write_images(directory: str) -> list[str]:
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(20251123)
    for name, mode, width, height in IMAGES:
        rgb = picture(rng, width, height).round().astype(np.uint8)
        path = os.path.join(directory, name)
        if mode == "RGB" and name.endswith(".jpg"):
            Image.fromarray(rgb, "RGB").save(path, quality=90)
        elif mode == "RGB":
            Image.fromarray(rgb, "RGB").save(path)
        elif mode == "RGBA":
            y, x = np.mgrid[0:height, 0:width]
            alpha = np.clip(255 * x / (width - 1) * 1.4 - 40, 0, 255)  # 0 on the left, opaque on the right
            alpha[(y // 10) % 3 == 0] = 128
            Image.fromarray(np.dstack([rgb, alpha.round().astype(np.uint8)]), "RGBA").save(path)
        elif mode == "L":
            Image.fromarray(rgb, "RGB").convert("L").save(path)
        else:  # a 16-colour palette, index 0 transparent
            quantised = Image.fromarray(rgb, "RGB").quantize(colors=16, method=Image.Quantize.MEDIANCUT, dither=0)
            quantised.save(path, transparency=0)
    return [name for name, *_ in IMAGES]


def open_image(directory, name):
    with Image.open(os.path.join(directory, name)) as image:
        image.load()
        return image.copy()


# ---------------------------------------------------------------------------------------
# Processor

def image_processor():
    """Qwen3-VL's preprocessor_config values (patch 16, merge 2, temporal 2, mean = std = 0.5,
    bicubic) with small pixel bounds, on the PIL backend."""
    return Qwen2VLImageProcessorPil(size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
                                    patch_size=PATCH, temporal_patch_size=TEMPORAL, merge_size=MERGE,
                                    image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])


class NoVideoProcessor:
    """Qwen3VLProcessor checks, saves and serialises every sub-processor, and the video
    processor's base class needs torchvision: while this is active the processor has no
    video_processor attribute (image_processor and tokenizer only)."""

    def __enter__(self):
        self.original = Qwen3VLProcessor.__dict__.get("get_attributes")
        attributes = [a for a in Qwen3VLProcessor.get_attributes() if a != "video_processor"]
        Qwen3VLProcessor.get_attributes = classmethod(lambda cls: list(attributes))

    def __exit__(self, *exc):
        if self.original is None:
            del Qwen3VLProcessor.get_attributes
        else:
            Qwen3VLProcessor.get_attributes = self.original


def write_processor(out_dir: str, vocab_size: int, template: str, tokenizer_family: str = "qwen3_vl"):
    """Tokenizer (fixture_text) + image processor + template, saved by the processor's
    save_pretrained (processor_config.json, chat_template.jinja, tokenizer files) and by the
    image processor's (preprocessor_config.json, the layout Hub checkpoints have), then read
    back from those files. AutoProcessor would also build a video processor: torchvision."""
    fixture_text.write_model_tokenizer(out_dir, tokenizer_family, vocab_size, template)
    with NoVideoProcessor():
        Qwen3VLProcessor(image_processor=image_processor(), tokenizer=AutoTokenizer.from_pretrained(out_dir),
                         chat_template=template).save_pretrained(out_dir)
        image_processor().save_pretrained(out_dir)
        tokenizer = AutoTokenizer.from_pretrained(out_dir)
        processor = Qwen3VLProcessor(image_processor=Qwen2VLImageProcessorPil.from_pretrained(out_dir),
                                     tokenizer=tokenizer, chat_template=tokenizer.chat_template)
    assert processor.chat_template == template
    return processor


def preprocess_goldens(processor, image_dir, names):
    """Per image: decoded RGB (after convert_to_rgb), resized RGB, pixel_values, grid."""
    ip, tensors, entries = processor.image_processor, {}, []
    for i, name in enumerate(names):
        image = open_image(image_dir, name)
        rgb = convert_to_rgb(image, return_numpy=True)
        resized = ip.resize(np.moveaxis(rgb, -1, 0), size=ip.size, resample=ip.resample, factor=FACTOR)
        out = ip(images=[image], return_tensors="pt")
        grid = out["image_grid_thw"][0].tolist()
        assert resized.shape[1:] == (grid[1] * PATCH, grid[2] * PATCH) and resized.dtype == np.uint8
        # The resized pixels, rescaled, normalised and patchified, must give pixel_values.
        again = ip._preprocess([resized], do_resize=False, size=None, resample=None, do_rescale=True,
                               rescale_factor=ip.rescale_factor, do_normalize=True, image_mean=ip.image_mean,
                               image_std=ip.image_std, patch_size=PATCH, temporal_patch_size=TEMPORAL,
                               merge_size=MERGE, return_tensors="pt")
        assert torch.equal(again["pixel_values"], out["pixel_values"]), name
        tensors[f"image{i}.decoded_rgb"] = torch.from_numpy(np.ascontiguousarray(rgb))
        tensors[f"image{i}.resized_rgb"] = torch.from_numpy(np.ascontiguousarray(np.moveaxis(resized, 0, -1)))
        tensors[f"image{i}.pixel_values"] = out["pixel_values"].float().contiguous()
        tensors[f"image{i}.image_grid_thw"] = out["image_grid_thw"].to(torch.int64).contiguous()
        entries.append({"index": i, "file": f"images/{name}", "mode": image.mode,
                        "has_transparency": "A" in image.getbands() or image.info.get("transparency") is not None,
                        "size_hw": [image.height, image.width], "resized_hw": [grid[1] * PATCH, grid[2] * PATCH],
                        "image_grid_thw": grid, "patches": int(out["pixel_values"].shape[0]),
                        "image_tokens": grid[0] * grid[1] * grid[2] // MERGE ** 2})
    meta = {
        "generator": "tools/make_fixtures.py (fixture_vision.py)",
        "transformers_version": transformers.__version__, "pillow_version": PIL.__version__,
        "libjpeg_version": PIL.features.version("jpg"), "zlib_version": PIL.features.version("zlib"),
        "image_processor": type(ip).__name__, "backend": "pil",
        "backend_reason": "torchvision is not installed; the PIL/NumPy backend is selected explicitly",
        "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, "factor": FACTOR, "resample": int(ip.resample),
        "rescale_factor": ip.rescale_factor, "image_mean": list(ip.image_mean), "image_std": list(ip.image_std),
        "patch_layout": "pixel_values row = one 16×16 patch in merge-block order (block row, block col, "
                        "row in block, col in block); columns = channel, temporal copy (2), patch row, patch col",
        "decoded_rgb": "convert_to_rgb(PIL image): alpha / tRNS composited on white, [H, W, 3] uint8",
        "resized_rgb": "after the bicubic resize to resized_hw (uint8), before rescale/normalise",
        "images": entries,
    }
    return meta, tensors


# ---------------------------------------------------------------------------------------
# Model

@torch.no_grad()
def reinitialise_vision(model):
    """The vision tower at scales where images move the logits: patch and position
    embeddings O(1), LayerNorms 1 + N(0, 0.1²), Linear/Conv weights N(0, 1/fan_in)."""
    for name, p in model.model.visual.named_parameters():
        if "norm" in name and name.endswith(".weight"):
            p.copy_(1 + 0.1 * torch.randn_like(p))
        elif name.endswith(".bias"):
            p.normal_(0, 0.1)
        elif name == "pos_embed.weight":
            p.normal_(0, 0.5)
        else:
            p.normal_(0, 1.0 / math.sqrt(p[0].numel()))


def build_model(s: base.Spec, tokenizer_ids: dict):
    torch.manual_seed(s.seed)
    family = FAMILIES[s.name]
    config = family.config_class(text_config=s.config["text_config"], vision_config=s.config["vision_config"],
                              tie_word_embeddings=False, **tokenizer_ids)
    model = family.model_class(config)
    model.set_attn_implementation("eager")
    model.set_experts_implementation("eager")
    base.reinitialise(model, hidden=config.text_config.hidden_size)
    reinitialise_vision(model)
    return model.eval()


@torch.no_grad()
def load(directory, family: Family = QWEN3_VL):
    """from_pretrained, with every tensor copied out of the mmap'd file: safetensors data sits
    at 8-byte offsets, and BLAS rounds some products differently on unaligned weights (seen
    here on the [1, 64] × [64, 16]ᵀ expert products), so the copy makes the goldens those of
    ordinarily allocated weights, bit for bit the in-memory model's."""
    model = family.model_class.from_pretrained(directory, dtype=torch.float32,
                                                               **base.IMPLEMENTATIONS).eval()
    for tensor in list(model.parameters()) + list(model.buffers()):
        tensor.data = tensor.data.clone()
    return model


def text_view(model):
    """What make_fixtures' Patch and RouterRecorder expect: .model.layers and .config."""
    return types.SimpleNamespace(model=model.model.language_model, config=model.config.text_config)


def messages_for_cases():
    """(name, messages, experts_per_token); images are named by their fixture path."""
    one = [{"role": "user", "content": [{"type": "image", "image": "images/rgb-50x37.png"},
                                        {"type": "text", "text": "What is in this picture?"}]}]
    two = [{"role": "system", "content": "You are Jindou."},
           {"role": "user", "content": [{"type": "text", "text": "Compare "},
                                        {"type": "image", "image": "images/rgba-90x60.png"},
                                        {"type": "text", "text": " with "},
                                        {"type": "image", "image": "images/gray-23x97.png"},
                                        {"type": "text", "text": "."}]}]
    text = [{"role": "user", "content": [{"type": "text", "text": "Hi! What is a mixture of experts?"}]}]
    palette = [{"role": "user", "content": [{"type": "image", "image": "images/palette-64x64.png"},
                                            {"type": "text", "text": "Colours?"}]}]
    return [("text-only", text, None), ("one-image", one, None), ("two-images", two, None),
            ("palette-image-k4", palette, 4)]


def with_images(messages, fixture_dir):
    """The messages with image paths replaced by PIL images, and those images in order."""
    images, resolved = [], []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [dict(item, image=open_image(fixture_dir, item["image"])) if item["type"] == "image" else item
                       for item in content]
            images += [item["image"] for item in content if item["type"] == "image"]
        resolved.append(dict(message, content=content))
    return resolved, images


class VisionRecorder:
    """Forward hooks on the vision tower: patch embeddings, the input of block 0 (+ the
    interpolated position embeddings) and every block's output."""

    def __init__(self, visual):
        self.visual, self.outputs, self.handles = visual, {}, []

    def __enter__(self):
        def keep(key, use_input=False):
            def hook(module, inputs, output):
                self.outputs[key] = (inputs[0] if use_input else output).detach().float().clone()
            return hook
        self.handles.append(self.visual.patch_embed.register_forward_hook(keep("vision_patch_embeds")))
        self.handles.append(self.visual.blocks[0].register_forward_hook(keep("vision_block_input", True)))
        for b, block in enumerate(self.visual.blocks):
            self.handles.append(block.register_forward_hook(keep(f"vision_block{b}_output")))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def split_inputs(model, inputs):
    """(prompt ids, the other processor inputs) for make_fixtures' greedy and generate_check.
    Positions come from transformers: get_rope_index at prefill, the rope_deltas it caches
    for decoding. The model keeps rope_deltas across calls: never reuse another prompt's."""
    model.model.rope_deltas = None
    return inputs["input_ids"][0].tolist(), {k: v for k, v in inputs.items() if k != "input_ids"}


def model_inputs(processor, messages, fixture_dir):
    resolved, images = with_images(messages, fixture_dir)
    rendered = processor.apply_chat_template(resolved, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[rendered], images=images or None, return_tensors="pt")
    # The one-call path (the template renders, the processor loads the same PIL images) agrees.
    direct = processor.apply_chat_template(resolved, tokenize=True, add_generation_prompt=True, return_dict=True,
                                           return_tensors="pt")
    for key in inputs:
        assert torch.equal(inputs[key], direct[key]), f"apply_chat_template(tokenize=True) differs in {key}"
    return rendered, {k: v for k, v in inputs.items() if k != "attention_mask"}


@torch.no_grad()
def make_goldens(model, s: base.Spec, processor, fixture_dir):
    text = text_view(model)
    kmax = text.config.num_experts_per_tok
    tensors, cases, generate_diffs = {}, [], []
    for index, (name, messages, k) in enumerate(messages_for_cases()):
        rendered, inputs = model_inputs(processor, messages, fixture_dir)
        ids = inputs["input_ids"]
        grid = inputs.get("image_grid_thw")
        positions, deltas = model.model.get_rope_index(ids, inputs["mm_token_type_ids"], image_grid_thw=grid)
        with base.Patch(text, k=k):
            with base.RouterRecorder(text, k or kmax) as recorder:
                prompt, extra = split_inputs(model, inputs)
                prefill, steps, tokens = base.greedy(model, prompt, MAX_NEW_TOKENS, **extra)
            prompt, extra = split_inputs(model, inputs)
            generated, generate_logits = base.generate_check(model, prompt, MAX_NEW_TOKENS, **extra)
        assert generated == tokens, f"{name}: model.generate chose {generated}, the cache loop {tokens}"
        generate_diffs.append(float((generate_logits - steps).abs().max()))
        p = f"case{index}."
        tensors[p + "input_ids"] = ids[0].to(torch.int64).contiguous()
        tensors[p + "position_ids"] = positions[:, 0].to(torch.int64).contiguous()  # [3 (t, h, w), P]
        tensors[p + "prefill_logits"] = prefill.contiguous()
        tensors[p + "generated_logits"] = steps.contiguous()
        entry = {"index": index, "name": name, "messages": messages, "rendered_prompt": rendered,
                 "prompt_ids": ids[0].tolist(), "mm_token_type_ids": inputs["mm_token_type_ids"][0].tolist(),
                 "images": [item["image"] for m in messages if isinstance(m["content"], list)
                            for item in m["content"] if item["type"] == "image"],
                 "experts_per_token": k or kmax, "auto_threshold": None, "max_new_tokens": MAX_NEW_TOKENS,
                 "greedy_new_tokens": tokens, "rope_delta": int(deltas[0, 0]),
                 # Decode step s (s = 0 is the first generated token fed back) sits at position
                 # len(prompt_ids) + rope_delta + s in all three MRoPE sections.
                 "decode_position_start": ids.shape[1] + int(deltas[0, 0]),
                 "min_top_gap": min(base.top_gap(prefill), base.top_gap(steps)),
                 "min_routing_margin": base.minimum(recorder.margins),
                 "min_group_margin": None, "min_auto_threshold_margin": None}
        if grid is not None:
            tensors[p + "pixel_values"] = inputs["pixel_values"].float().contiguous()
            tensors[p + "image_grid_thw"] = grid.to(torch.int64).contiguous()
            with VisionRecorder(model.model.visual) as vision:
                features = model.model.get_image_features(inputs["pixel_values"], grid)
            tensors[p + "image_embeds"] = torch.cat(features.pooler_output).float().contiguous()
            for j, feature in enumerate(getattr(features, "deepstack_features", None) or []):
                tensors[p + f"deepstack{j}"] = torch.cat(feature).float().contiguous()
            tensors.update({p + key: value.contiguous() for key, value in vision.outputs.items()})
            entry["image_grid_thw"] = grid.tolist()
            entry["image_sensitivity"] = image_sensitivity(model, inputs, prefill)
        cases.append(entry)

    # Router captures during the one-image prompt's prefill (configured K and the override).
    _, inputs = model_inputs(processor, messages_for_cases()[1][1], fixture_dir)
    router_meta = []
    for k in (None, s.router_k):
        model.model.rope_deltas = None
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
def image_sensitivity(model, inputs, prefill) -> dict:
    """How much the image moves the logits: the same prompt with pixel_values all 0."""
    model.model.rope_deltas = None
    blank = model(**dict(inputs, pixel_values=torch.zeros_like(inputs["pixel_values"]))).logits[0].float()
    return {"max_abs_logit_diff_blank_image": float((blank - prefill).abs().max()),
            "last_position_argmax_changed": int(blank[-1].argmax()) != int(prefill[-1].argmax())}


@torch.no_grad()
def grouped_mm_difference(model, inputs) -> float | None:
    model.model.rope_deltas = None
    eager = model(**inputs).logits
    try:
        model.set_experts_implementation("grouped_mm")
    except (ValueError, ImportError):
        return None
    try:
        model.model.rope_deltas = None
        return float((model(**inputs).logits - eager).abs().max())
    finally:
        model.set_experts_implementation("eager")


@torch.no_grad()
def assert_same_model(expected, actual, inputs, what):
    want, got = expected.state_dict(), actual.state_dict()
    assert want.keys() == got.keys(), f"{what}: tensor names differ: {set(want) ^ set(got)}"
    for key in want:
        assert torch.equal(want[key], got[key]), f"{what}: {key} differs"
    expected.model.rope_deltas = actual.model.rope_deltas = None
    assert torch.equal(expected(**inputs).logits, actual(**inputs).logits), f"{what}: logits differ"


def tensor_inventory(model_dir) -> dict:
    """Checkpoint tensor names and shapes, grouped by prefix, for golden.json."""
    from safetensors import safe_open
    with safe_open(os.path.join(model_dir, "model.safetensors"), "pt") as f:
        return {key: list(f.get_slice(key).get_shape()) for key in sorted(f.keys())
                if ".layers.1." not in key and ".layers.2." not in key and ".blocks.1." not in key
                and ".blocks.2." not in key and "deepstack_merger_list.1." not in key}


@torch.no_grad()
def write_fixture(s: base.Spec, root: str, templates: dict) -> dict:
    out_dir = os.path.join(root, s.name)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    names = write_images(os.path.join(out_dir, "images"))
    family = FAMILIES[s.name]
    processor = write_processor(out_dir, s.config["text_config"]["vocab_size"], templates["qwen3_vl"], family.tokenizer)
    token = processor.tokenizer.convert_tokens_to_ids
    tokenizer_ids = {"image_token_id": token("<|image_pad|>"), "video_token_id": token("<|video_pad|>"),
                     "vision_start_token_id": token("<|vision_start|>"), "vision_end_token_id": token("<|vision_end|>")}
    model = build_model(s, tokenizer_ids)
    model.save_pretrained(out_dir)
    _, probe = model_inputs(processor, messages_for_cases()[2][1], out_dir)
    reloaded = load(out_dir, family)
    assert reloaded.config._attn_implementation == "eager"
    assert reloaded.config.vision_config._attn_implementation == "eager"
    assert_same_model(model, reloaded, probe, f"{s.name} reload")

    pre_meta, pre_tensors = preprocess_goldens(processor, os.path.join(out_dir, "images"), names)
    base.write_goldens(out_dir, "preprocess", pre_meta, pre_tensors)

    cases, router, tensors, generate_diff = make_goldens(reloaded, s, processor, out_dir)
    config = reloaded.config
    meta = {
        "generator": "tools/make_fixtures.py (fixture_vision.py)",
        "transformers_version": transformers.__version__, "torch_version": torch.__version__,
        "checkpoint": s.name, "architecture": config.architectures[0], "dtype": "float32", "seed": s.seed,
        "attn_implementation": config._attn_implementation,
        "vision_attn_implementation": config.vision_config._attn_implementation,
        "experts_implementation": config.text_config._experts_implementation,
        "eos_token_id": None, "max_abs_logit_diff_generate": generate_diff,
        "max_abs_logit_diff_grouped_mm": grouped_mm_difference(reloaded, probe),
        "image_processor": type(processor.image_processor).__name__, "image_processor_backend": "pil",
        "image_processor_backend_reason": "torchvision is not installed; transformers' PIL/NumPy backend is "
                                          "used explicitly (Qwen2VLImageProcessorPil.from_pretrained)",
        "chat_template_source": "llama-cpp-python sdist (PyPI), vendor/llama.cpp/"
                                + fixture_text.TEMPLATE_FILES["qwen3_vl"] + ": Qwen's own vision-aware template "
                                "(llama.cpp vendors no Qwen2/2.5/3-VL template); rendered with add_generation_prompt",
        "token_ids": tokenizer_ids,
        "mrope_section": config.text_config.rope_parameters["mrope_section"],
        "mrope_layout": "interleaved: rotary frequency pair i (of head_dim/2) uses the H position if i % 3 == 1 "
                        "and i < 3·mrope_section[1], the W position if i % 3 == 2 and i < 3·mrope_section[2], "
                        "else T",
        "router_normalises_top_k": "always (Qwen3VLMoeTextTopKRouter has no norm_topk_prob switch)",
        "deepstack": "deepstack{j} (from vision block deepstack_visual_indexes[j], through "
                     "deepstack_merger_list[j]) is added to the image-token rows after text layer j"
                     if family is QWEN3_VL else "none (Qwen3_5VisionModel drops DeepStack)",
        "text_model": "Qwen3-MoE's decoder" if family is QWEN3_VL else
                      "Qwen3-Next's (Gated DeltaNet at layer_types' linear_attention layers with split in_proj_qkv/z/b/a, "
                      "gated full attention, zero-centred norms, sigmoid-gated shared expert)",
        "tokenizer_regex": fixture_text.TOKENIZER_PATTERNS[family.tokenizer],
        "vision_tensors": "per image case: vision_patch_embeds [patches, 32] (Conv3d), vision_block_input "
                          "(+ bilinear-interpolated pos_embed, align_corners), vision_block{b}_output, "
                          "image_embeds [image tokens, 64] (merger), deepstack{j} [image tokens, 64]; "
                          "rows in the processor's merge-block order, images concatenated",
        "checkpoint_tensors_layer0": tensor_inventory(out_dir),
        "cases": cases, "router": router, "shards": 1,
    }
    base.write_goldens(out_dir, "golden", meta, tensors)
    return meta
