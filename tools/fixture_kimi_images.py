#!/usr/bin/env python3
"""Kimi-K2.5 image preprocessing goldens for JindouImages, written by torch and transformers.

Writes Tests/Fixtures/images/torch-resize.json + torch-resize.safetensors:

  resize      random uint8 RGB images and what torchvision's
              `resize(CHW uint8, [h, w], BICUBIC, antialias=True)` makes of them on CPU
              (torch's native uint8 antialiased bicubic); tensors
              resize.{i}.input uint8 [H, W, 3] and resize.{i}.output uint8 [h, w, 3].
  navit       inputs and results of transformers' `navit_resize`.
  processor   the image files of Tests/Fixtures/images (written by tools/fixture_images.py)
              through `Kimi_K25ImageProcessor(max_patches=M, size=S×S)` opened with PIL, as
              transformers loads them; tensors {key}.pixel_values float32 [N, 3, p, p] and
              {key}.grid_thw int64 [3], plus the text of the preprocessor_config.json each setting
              saves.

Deterministic: re-running reproduces both files byte for byte on the same versions.
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchvision
import transformers
from PIL import Image
from safetensors.numpy import save_file
from torchvision.transforms.v2 import functional as tvF
from transformers.image_transforms import convert_to_rgb
from transformers.models.kimi_k25.image_processing_kimi_k25 import Kimi_K25ImageProcessor, navit_resize

# (height, width) → (height, width). torch refuses a 1×1 *output* from a CHW input on AVX2
# (an internal assert in UpSampleKernelAVXAntialias.h: the output counts as channels-last),
# and navit_resize never asks for one, so none is listed.
RESIZE_CASES = [
    ((17, 23), (17, 23)),  # same size: returned unchanged
    ((1, 1), (1, 1)),
    ((1, 1), (5, 7)),  # upscale from a single pixel
    ((1, 57), (1, 20)),
    ((40, 1), (13, 1)),
    ((1, 30), (3, 30)),
    ((1, 90), (2, 45)),
    ((64, 64), (32, 32)),  # exact 2×
    ((50, 80), (25, 40)),
    ((90, 60), (30, 20)),  # exact 3×
    ((99, 120), (33, 40)),
    ((10, 12), (37, 29)),  # upscales
    ((5, 3), (17, 11)),
    ((31, 17), (62, 34)),
    ((40, 50), (40, 17)),  # one axis only
    ((40, 50), (23, 50)),
    ((33, 20), (33, 71)),
    ((60, 20), (15, 77)),  # down one axis, up the other
    ((120, 120), (2, 3)),  # strong downscale: precision 22 and long kernels
    ((117, 3), (4, 3)),
    ((1, 120), (1, 7)),
    ((61, 97), (49, 79)),  # what navit_resize asks for rgb.png with max_patches 16
]
RANDOM_RESIZE_CASES = 18

NAVIT_CASES = [
    # (height, width, patch_size, merge_size, max_patches, max_size_per_side)
    (61, 97, 14, 2, 16384, 512),  # within every budget: only padded
    (10, 5, 14, 2, 16384, 512),  # under one patch: max(1.0, 0) is a float
    (1, 1, 14, 2, 16384, 512),
    (13, 14000, 14, 2, 16384, 512),  # one axis under a patch, the other over the side limit
    (3000, 4000, 14, 2, 16384, 512),  # total patch budget
    (1080, 1920, 14, 2, 16384, 512),
    (1080, 1920, 14, 2, 1024, 512),
    (10000, 100, 14, 2, 16384, 512),  # per-side limit 512·14
    (100, 20000, 14, 2, 16384, 512),
    (7168, 7168, 14, 2, 1 << 20, 512),  # exactly at the side limit
    (7169, 5, 14, 2, 16384, 512),
    (120, 300, 14, 2, 8, 512),
    (120, 300, 14, 2, 64, 2),
    (4032, 3024, 16, 2, 4096, 256),
    (50, 50, 14, 1, 1, 512),
    (28, 28, 14, 2, 4, 512),
    (999, 1001, 14, 2, 2500, 512),
]

# (max_patches, max size per side, images): the class defaults pad small images without
# resizing (never upscaling); max_patches 8 downscales the larger files by the patch budget
# and leaves the small ones alone; a 28-pixel side limit downscales every file.
IMAGES = ["rgb.png", "rgba.png", "gray.png", "palette.png", "rgb16.png", "gray16.png", "interlaced.png",
          "gray_alpha.png", "photo.jpg", "progressive.jpg", "gray.jpg"]
SETTINGS = [
    (16384, 512, ["gray.png", "gray16.png", "gray.jpg"]),
    (8, 512, IMAGES),
    (64, 2, IMAGES),
]


def torchvision_resize(image, height, width):
    """HWC uint8 → HWC uint8, on the contiguous CHW tensor the processor hands torchvision."""
    chw = torch.from_numpy(image).permute(2, 0, 1).contiguous()
    out = tvF.resize(chw, [height, width], interpolation=tvF.InterpolationMode.BICUBIC, antialias=True)
    return np.ascontiguousarray(out.permute(1, 2, 0).numpy())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "Tests/Fixtures/images")
    args = parser.parse_args()
    directory = args.out
    torch.manual_seed(0)
    rng = np.random.RandomState(25)
    tensors = {}

    cases = list(RESIZE_CASES)
    while len(cases) < len(RESIZE_CASES) + RANDOM_RESIZE_CASES:
        source = tuple(int(v) for v in rng.randint(1, 81, size=2))
        target = tuple(int(v) for v in rng.randint(1, 81, size=2))
        if target != (1, 1):
            cases.append((source, target))
    resize = []
    for index, ((height, width), (out_height, out_width)) in enumerate(cases):
        image = rng.randint(0, 256, size=(height, width, 3)).astype(np.uint8)
        tensors[f"resize.{index}.input"] = image
        tensors[f"resize.{index}.output"] = torchvision_resize(image, out_height, out_width)
        resize.append({"index": index, "height": height, "width": width, "resized_height": out_height, "resized_width": out_width})

    navit = []
    for height, width, patch, merge, max_patches, max_size in NAVIT_CASES:
        (rh, rw), (ph, pw) = navit_resize(height, width, patch_size=patch, merge_kernel_size=merge,
                                          max_patches=max_patches, max_size_per_side=max_size)
        navit.append({"height": height, "width": width, "patch_size": patch, "merge_size": merge,
                      "max_patches": max_patches, "max_size_per_side": max_size,
                      "resized_height": rh, "resized_width": rw, "padded_height": ph, "padded_width": pw})

    settings, processed = [], []
    for max_patches, side, files in SETTINGS:
        processor = Kimi_K25ImageProcessor(max_patches=max_patches, size={"max_height": side, "max_width": side})
        with tempfile.TemporaryDirectory() as saved:
            processor.save_pretrained(saved)
            config = (Path(saved) / "preprocessor_config.json").read_text()
        name = f"m{max_patches}-s{side}"
        settings.append({"name": name, "max_patches": max_patches, "max_size_per_side": side, "preprocessor_config": config})
        p, m = processor.patch_size, processor.merge_size
        for file_name in files:
            with Image.open(directory / file_name) as opened:
                output = processor(opened, return_tensors="pt")
                decoded = np.asarray(convert_to_rgb(opened, return_numpy=True))
            height, width = decoded.shape[:2]
            (rh, rw), (ph, pw) = navit_resize(height, width, p, m, max_patches, side)
            # The processor's output must be these steps, each tested on its own in Swift.
            resized = torchvision_resize(decoded, rh, rw)
            padded = np.zeros((ph, pw, 3), dtype=np.uint8)
            padded[:rh, :rw] = resized
            mean = torch.tensor(processor.image_mean) * (1.0 / processor.rescale_factor)
            std = torch.tensor(processor.image_std) * (1.0 / processor.rescale_factor)
            values = (torch.from_numpy(padded).permute(2, 0, 1).float() - mean.view(3, 1, 1)) / std.view(3, 1, 1)
            patches = values.reshape(3, ph // p, p, pw // p, p).permute(1, 3, 0, 2, 4).reshape(-1, 3, p, p)
            assert torch.equal(patches, output["pixel_values"]), (name, file_name)
            assert output["image_grid_thw"].tolist() == [[1, ph // p, pw // p]], (name, file_name)

            key = f"{name}.{Path(file_name).stem}.{Path(file_name).suffix[1:]}"
            tensors[f"{key}.pixel_values"] = np.ascontiguousarray(output["pixel_values"].numpy().astype(np.float32))
            tensors[f"{key}.grid_thw"] = output["image_grid_thw"][0].numpy().astype(np.int64)
            processed.append({"key": key, "setting": name, "file": file_name, "width": width, "height": height,
                              "resized_width": rw, "resized_height": rh, "padded_width": pw, "padded_height": ph})

    save_file(tensors, str(directory / "torch-resize.safetensors"))
    (directory / "torch-resize.safetensors").chmod(0o644)  # safetensors writes 0600
    summary = {
        "generator": "tools/fixture_kimi_images.py",
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "transformers_version": transformers.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "processor": "Kimi_K25ImageProcessor",
        "resize": resize,
        "navit": navit,
        "settings": settings,
        "processed": processed,
    }
    (directory / "torch-resize.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    total = sum((directory / f).stat().st_size for f in ("torch-resize.json", "torch-resize.safetensors"))
    print(f"wrote {len(resize)} resize, {len(navit)} navit_resize and {len(processed)} processor cases to {directory} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
