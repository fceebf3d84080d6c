#!/usr/bin/env python3
"""Image fixtures and goldens for JindouImages, written by PIL and transformers.

Writes Tests/Fixtures/images/: a set of small PNG and JPEG files covering the decoder's
cases, `preprocessor_config.json` (saved by transformers' Qwen2VLImageProcessorPil), and
for every image what PIL and the processor make of it:

  expected.safetensors  {name}.decoded   uint8 [H, W, 3]  convert_to_rgb(Image.open(file))
                        {name}.resized   uint8 [h, w, 3]  PIL bicubic to smart_resize's size
                        {name}.pixel_values float32 [N, 3*T*p*p]  the processor's output
                        {name}.grid_thw  int64 [3]        image_grid_thw
  expected.json         versions, processor settings, per image its mode/size/resized size,
                        and a smart_resize table (inputs and results, or the error).

Deterministic: re-running reproduces every file byte for byte on the same versions.
"""

import argparse
import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import PIL
import transformers
from PIL import Image
from safetensors.numpy import save_file
from transformers.image_transforms import convert_to_rgb
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil, smart_resize

PATCH, MERGE, TEMPORAL = 16, 2, 2
MIN_PIXELS, MAX_PIXELS = 32 * 32 * 2, 32 * 32 * 5


def scene(width, height, seed, channels=3):
    """Smooth gradients, a few discs and mild noise: varied, yet small once compressed."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    planes = []
    for c in range(channels):
        fx, fy, phase = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 6.28)
        plane = 127.5 + 100 * np.sin(fx * 6.28 * x / width + phase) * np.cos(fy * 6.28 * y / height)
        for _ in range(3):
            cx, cy, r, v = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(3, 15), rng.uniform(-120, 120)
            plane += v * (((x - cx) ** 2 + (y - cy) ** 2) < r * r)
        plane += rng.normal(0, 6, size=plane.shape)
        planes.append(plane)
    return np.clip(np.stack(planes, axis=-1), 0, 255)


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, samples, bit_depth, color_type, interlace=False, trns=None):
    """A PNG PIL cannot write: 16-bit colour, Adam7 interlacing, gray/RGB tRNS colours."""
    height, width = samples.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"

    def scanlines(image):
        return b"".join(b"\x00" + row.astype(dtype).tobytes() for row in image)

    if interlace:
        raw = b"".join(scanlines(samples[y0::dy, x0::dx]) for x0, y0, dx, dy in ADAM7 if samples[y0::dy, x0::dx].size)
    else:
        raw = scanlines(samples)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, int(interlace)))
    if trns is not None:
        data += png_chunk(b"tRNS", struct.pack(">" + "H" * len(trns), *trns))
    data += png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b"")
    path.write_bytes(data)


def make_images(directory):
    """(name, file name, what it covers); files are written into `directory`."""
    made = []

    rgb = scene(97, 61, 1).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(directory / "rgb.png")
    made.append(("rgb", "rgb.png", "8-bit RGB PNG, 97x61"))

    rgba = scene(150, 40, 2, channels=4)
    alpha = np.tile(np.linspace(0, 255, 150), (40, 1))
    alpha[:, :20] = 0
    alpha[:, -20:] = 255
    alpha[10:14, :] = 0
    rgba[..., 3] = alpha
    Image.fromarray(rgba.astype(np.uint8), "RGBA").save(directory / "rgba.png")
    made.append(("rgba", "rgba.png", "RGBA PNG with alpha 0…255, composited on white"))

    gray = scene(23, 31, 3, channels=1)[..., 0].astype(np.uint8)
    Image.fromarray(gray, "L").save(directory / "gray.png")
    made.append(("gray", "gray.png", "8-bit grayscale PNG 23x31, upscaled"))

    indices = (scene(64, 100, 4, channels=1)[..., 0] / 16).astype(np.uint8)  # 16 colours
    palette_image = Image.fromarray(indices, "P")
    rng = np.random.RandomState(4)
    palette_image.putpalette(rng.randint(0, 256, size=16 * 3).astype(np.uint8).tobytes())
    alphas = bytes([0, 255, 128, 64, 255, 200, 0, 255, 30])  # shorter than the palette
    palette_image.save(directory / "palette.png", transparency=alphas, bits=4)
    made.append(("palette", "palette.png", "4-bit palette PNG (16 colours) with a partial tRNS (alpha per entry)"))

    rgb16 = (scene(120, 80, 5) * 257 + np.random.RandomState(5).randint(0, 257, size=(80, 120, 3))).clip(0, 65535)
    write_png(directory / "rgb16.png", rgb16.astype(np.uint16), 16, 2)
    made.append(("rgb16", "rgb16.png", "16-bit RGB PNG (PIL keeps the high byte); 80/32 = 2.5 rounds to even"))

    gray16 = (scene(40, 30, 6, channels=1)[..., 0] * 2.5).astype(np.uint16)  # 0…637: PIL clamps > 255
    write_png(directory / "gray16.png", gray16, 16, 0)
    made.append(("gray16", "gray16.png", "16-bit grayscale PNG, mode I;16, values above 255 clamp"))

    interlaced = (scene(57, 43, 7) / 32).astype(np.uint8) * 32  # posterised so tRNS matches
    transparent = interlaced[5, 5].tolist()
    write_png(directory / "interlaced.png", interlaced, 8, 2, interlace=True, trns=transparent)
    made.append(("interlaced", "interlaced.png", "Adam7-interlaced RGB PNG with a tRNS colour"))

    gray_alpha = np.stack([scene(33, 70, 8, channels=1)[..., 0], np.tile(np.linspace(0, 255, 33), (70, 1))], axis=-1)
    Image.fromarray(gray_alpha.astype(np.uint8), "LA").save(directory / "gray_alpha.png")
    made.append(("gray_alpha", "gray_alpha.png", "8-bit gray+alpha PNG"))

    photo = scene(300, 120, 9).astype(np.uint8)
    Image.fromarray(photo, "RGB").save(directory / "photo.jpg", quality=90, subsampling=2)
    made.append(("photo", "photo.jpg", "baseline JPEG 4:2:0, 300x120, downscaled"))

    progressive = scene(70, 250, 10).astype(np.uint8)
    Image.fromarray(progressive, "RGB").save(directory / "progressive.jpg", quality=85, progressive=True, subsampling=1)
    made.append(("progressive", "progressive.jpg", "progressive JPEG 4:2:2, tall"))

    gray_jpeg = scene(45, 45, 11, channels=1)[..., 0].astype(np.uint8)
    Image.fromarray(gray_jpeg, "L").save(directory / "gray.jpg", quality=80)
    made.append(("gray_jpeg", "gray.jpg", "grayscale JPEG 45x45"))
    return made


SMART_RESIZE_CASES = [
    # (height, width, factor, min_pixels, max_pixels): round-half-to-even ties, both clamps,
    # the processor defaults of Qwen2-VL (28, 56², 28²·1280) and Qwen3-VL (32, 2¹⁶, 2²⁴).
    (80, 120, 32, MIN_PIXELS, MAX_PIXELS), (48, 48, 32, 32, 10**9), (80, 80, 32, 32, 10**9),
    (112, 144, 32, 32, 10**9), (14, 42, 28, 56 * 56, 28 * 28 * 1280), (42, 70, 28, 56 * 56, 28 * 28 * 1280),
    (1, 1, 32, MIN_PIXELS, MAX_PIXELS), (1, 200, 28, 56 * 56, 28 * 28 * 1280), (1, 201, 28, 56 * 56, 28 * 28 * 1280),
    (3000, 4000, 28, 56 * 56, 28 * 28 * 1280), (1080, 1920, 32, 65536, 16777216), (4032, 3024, 32, 65536, 16777216),
    (10000, 50, 32, 65536, 16777216), (50, 10000, 32, 65536, 16777216), (512, 512, 32, 65536, 16777216),
    (999, 1001, 28, 3136, 12845056), (7, 1399, 14, 3136, 1003520), (224, 224, 28, 3136, 12845056),
    (30000, 20000, 32, 65536, 16777216), (333, 777, 32, MIN_PIXELS, MAX_PIXELS), (17, 3, 16, 256, 1024),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "Tests/Fixtures/images")
    args = parser.parse_args()
    directory = args.out
    directory.mkdir(parents=True, exist_ok=True)

    processor = Qwen2VLImageProcessorPil(
        patch_size=PATCH, temporal_patch_size=TEMPORAL, merge_size=MERGE,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
        size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
    )
    processor.save_pretrained(directory)

    tensors, images = {}, []
    for name, file_name, covers in make_images(directory):
        with Image.open(directory / file_name) as opened:
            mode, info_transparency = opened.mode, opened.info.get("transparency")
            decoded = convert_to_rgb(opened, return_numpy=True)
        with Image.open(directory / file_name) as opened:
            output = processor(opened, return_tensors="np")
        height, width = decoded.shape[:2]
        resized_height, resized_width = smart_resize(height, width, PATCH * MERGE, MIN_PIXELS, MAX_PIXELS)
        resized = np.array(Image.fromarray(decoded, "RGB").resize((resized_width, resized_height), Image.BICUBIC))

        # `resized` must be the processor's own intermediate: redo its remaining steps.
        values = ((resized.astype(np.float64) * processor.rescale_factor).astype(np.float32) - np.float32(0.5)) / np.float32(0.5)
        gh, gw = resized_height // PATCH, resized_width // PATCH
        patches = values.transpose(2, 0, 1).reshape(3, gh // MERGE, MERGE, PATCH, gw // MERGE, MERGE, PATCH)
        patches = patches.transpose(1, 4, 2, 5, 0, 3, 6)[:, :, :, :, :, None]
        patches = np.broadcast_to(patches, (*patches.shape[:5], TEMPORAL, PATCH, PATCH)).reshape(gh * gw, -1)
        assert np.array_equal(patches, output["pixel_values"]), name
        assert output["image_grid_thw"].tolist() == [[1, gh, gw]], name

        tensors[f"{name}.decoded"] = np.ascontiguousarray(decoded)
        tensors[f"{name}.resized"] = np.ascontiguousarray(resized)
        tensors[f"{name}.pixel_values"] = np.ascontiguousarray(output["pixel_values"].astype(np.float32))
        tensors[f"{name}.grid_thw"] = output["image_grid_thw"][0].astype(np.int64)
        images.append({
            "name": name, "file": file_name, "covers": covers, "pil_mode": mode,
            "has_transparency": info_transparency is not None or "A" in mode,
            "width": width, "height": height, "resized_width": resized_width, "resized_height": resized_height,
        })

    table = []
    for height, width, factor, min_pixels, max_pixels in SMART_RESIZE_CASES:
        case = {"height": height, "width": width, "factor": factor, "min_pixels": min_pixels, "max_pixels": max_pixels}
        try:
            case["resized_height"], case["resized_width"] = smart_resize(height, width, factor, min_pixels, max_pixels)
        except ValueError as error:
            case["error"] = str(error)
        table.append(case)

    save_file(tensors, str(directory / "expected.safetensors"))
    summary = {
        "generator": "tools/fixture_images.py",
        "pillow_version": PIL.__version__,
        "transformers_version": transformers.__version__,
        "processor": "Qwen2VLImageProcessorPil",
        "patch_size": PATCH, "merge_size": MERGE, "temporal_patch_size": TEMPORAL,
        "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS,
        "images": images,
        "smart_resize": table,
    }
    (directory / "expected.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    total = sum(path.stat().st_size for path in directory.iterdir())
    print(f"wrote {len(images)} images and goldens to {directory} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
