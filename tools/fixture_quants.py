#!/usr/bin/env python3
"""Writes the GGUF block-quantisation fixtures (Tests/Fixtures/quants): float rows, their
Q8_0 and Q4_K encodings made by the references, and the references' dequantisations.

    /work/venv/bin/pip install gguf numpy
    /work/venv/bin/python tools/fixture_quants.py --llama-cpp /path/to/llama.cpp

References:
- Q8_0 encoding: the `gguf` package's `quants.quantize` (documented there as bit-exact with
  ggml's `quantize_row_q8_0_ref`); checked here against ggml's own function as well.
- Q4_K encoding: ggml's `quantize_row_q4_K_ref` (ggml/src/ggml-quants.c) — what
  `llama-quantize` runs for Q4_K without an importance matrix. The `gguf` package has no
  Q4_K encoder. This script compiles ggml-quants.c from the llama.cpp sources given with
  `--llama-cpp` (e.g. the copy vendored in the `llama-cpp-python` sdist on PyPI) into a
  small shared library and calls it through ctypes. It is compiled with
  `-ffp-contract=off`: C compilers may otherwise fuse a*b+c into one FMA where the CPU has
  it, which changes the last bit of some scales; Swift never fuses, so the reference does
  not either.
- Dequantisation of both: the `gguf` package's `quants.dequantize`, the reference issue 9
  names; checked against ggml's `dequantize_row_*` too.

The rows cover: normal weights at expert scale, uniform, heavy tails (a few outliers per
block), all-positive and all-negative blocks, exact zeros, a constant block, an all-zero
block, tiny (subnormal-range f16 scales) and large magnitudes. Output is deterministic.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, quants

ROW = 1024  # 4 Q4_K super-blocks, 32 Q8_0 blocks


def rows(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    out.append(rng.normal(0, 0.02, ROW))                       # expert weights at init scale
    out.append(rng.normal(0, 1.0, ROW))
    out.append(rng.uniform(-3, 3, ROW))
    heavy = rng.standard_t(2.5, ROW) * 0.05                     # heavy tails
    heavy[rng.choice(ROW, 12, replace=False)] *= 40
    out.append(heavy)
    out.append(np.abs(rng.normal(0, 0.5, ROW)))                 # all positive
    out.append(-np.abs(rng.normal(0, 0.5, ROW)) - 0.1)          # all negative, offset
    sparse = rng.normal(0, 0.3, ROW)
    sparse[rng.random(ROW) < 0.6] = 0                           # many exact zeros
    out.append(sparse)
    special = rng.normal(0, 0.2, ROW)
    special[0:256] = 0.0                                        # an all-zero super-block
    special[256:512] = 0.7                                      # a constant super-block
    special[512:544] = -2.5                                     # a constant Q8_0 block
    out.append(special)
    out.append(rng.normal(0, 1e-6, ROW))                        # f16 scales in the subnormal range
    out.append(rng.normal(0, 300.0, ROW))                       # large
    return np.stack(out).astype(np.float32)


def build_ggml(source: Path, work: Path) -> ctypes.CDLL:
    ggml = source / "ggml"
    library = work / "libggml-quants-ref.so"
    subprocess.run(
        ["gcc", "-O2", "-ffp-contract=off", "-fPIC", "-shared", "-I", str(ggml / "include"), "-I", str(ggml / "src"),
         str(ggml / "src" / "ggml-quants.c"), "-o", str(library), "-lm", "-Wl,--unresolved-symbols=ignore-all"],
        check=True)
    # ggml_abort, ggml_type_name etc. are referenced by functions never called here: bind lazily.
    lib = ctypes.CDLL(str(library), mode=os.RTLD_LAZY)
    float_p = ctypes.POINTER(ctypes.c_float)
    for name in ["quantize_row_q8_0_ref", "quantize_row_q4_K_ref"]:
        getattr(lib, name).argtypes = [float_p, ctypes.c_void_p, ctypes.c_int64]
        getattr(lib, name).restype = None
    for name in ["dequantize_row_q8_0", "dequantize_row_q4_K"]:
        getattr(lib, name).argtypes = [ctypes.c_void_p, float_p, ctypes.c_int64]
        getattr(lib, name).restype = None
    return lib


def ggml_quantize(lib: ctypes.CDLL, name: str, x: np.ndarray, type_size: int, block: int) -> np.ndarray:
    out = []
    for row in x:
        row = np.ascontiguousarray(row, dtype=np.float32)
        buffer = ctypes.create_string_buffer(len(row) // block * type_size)
        getattr(lib, name)(row.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), buffer, len(row))
        out.append(np.frombuffer(buffer.raw, dtype=np.uint8))
    return np.stack(out)


def ggml_dequantize(lib: ctypes.CDLL, name: str, q: np.ndarray, n: int) -> np.ndarray:
    out = []
    for row in q:
        row = np.ascontiguousarray(row)
        y = np.empty(n, dtype=np.float32)
        getattr(lib, name)(row.ctypes.data_as(ctypes.c_void_p), y.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), n)
        out.append(y)
    return np.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-cpp", required=True, type=Path, help="llama.cpp source tree (contains ggml/src/ggml-quants.c)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "Tests" / "Fixtures" / "quants")
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()

    x = rows(args.seed)
    with tempfile.TemporaryDirectory() as work:
        lib = build_ggml(args.llama_cpp, Path(work))
        q8 = quants.quantize(x, GGMLQuantizationType.Q8_0)
        assert np.array_equal(q8, ggml_quantize(lib, "quantize_row_q8_0_ref", x, 34, 32)), "gguf Q8_0 ≠ ggml"
        q4 = ggml_quantize(lib, "quantize_row_q4_K_ref", x, 144, 256)
        d8 = quants.dequantize(q8, GGMLQuantizationType.Q8_0).astype(np.float32)
        d4 = quants.dequantize(q4, GGMLQuantizationType.Q4_K).astype(np.float32)
        for name, q, d in [("dequantize_row_q8_0", q8, d8), ("dequantize_row_q4_K", q4, d4)]:
            assert np.array_equal(d.view(np.uint32), ggml_dequantize(lib, name, q, ROW).view(np.uint32)), f"gguf ≠ ggml {name}"

    args.out.mkdir(parents=True, exist_ok=True)
    files = {
        "input.f32": x.tobytes(),
        "q8_0.bin": q8.tobytes(),
        "q8_0.dequantized.f32": d8.tobytes(),
        "q4_k.bin": q4.tobytes(),
        "q4_k.dequantized.f32": d4.tobytes(),
    }
    for name, data in files.items():
        (args.out / name).write_bytes(data)
    import gguf
    manifest = {
        "rows": int(x.shape[0]),
        "columns": ROW,
        "seed": args.seed,
        "gguf_version": getattr(gguf, "__version__", None) or _version("gguf"),
        "numpy_version": np.__version__,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        "relative_rmse": {
            "q8_0": float(np.sqrt(((d8 - x) ** 2).mean() / (x ** 2).mean())),
            "q4_k": float(np.sqrt(((d4 - x) ** 2).mean() / (x ** 2).mean())),
        },
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    write_gguf(args.out / "small.gguf", x, q8, q4)
    print(f"wrote {args.out}: {x.shape[0]} rows × {ROW}; relative RMSE q8_0 {manifest['relative_rmse']['q8_0']:.2e}, "
          f"q4_k {manifest['relative_rmse']['q4_k']:.2e}")


def write_gguf(path: Path, x: np.ndarray, q8: np.ndarray, q4: np.ndarray) -> None:
    """A small GGUF written by the gguf package's GGUFWriter: metadata of every scalar type
    and arrays, and tensors in F32, F16, BF16, Q8_0 (2-D) and Q4_K (3-D, stacked like
    llama.cpp's `ffn_*_exps`), so Jindou's reader is checked against the reference writer."""
    import gguf
    writer = gguf.GGUFWriter(str(path), arch="qwen3moe")
    writer.add_uint32("qwen3moe.block_count", 2)
    writer.add_float32("qwen3moe.rope.freq_base", 1000000.0)
    writer.add_bool("jindou.flag", True)
    writer.add_int32("jindou.negative", -7)
    writer.add_uint64("jindou.big", 1 << 40)
    writer.add_float64("jindou.double", 0.1)
    writer.add_string("jindou.text", "Grüße, 筋斗")
    writer.add_array("jindou.tokens", ["a", "bc", "<|im_end|>"])
    writer.add_array("jindou.ints", [1, -2, 3])
    writer.add_tensor("f32.weight", x[:2, :64].copy())
    writer.add_tensor("f16.weight", x[2:4, :64].astype(np.float16))
    bf16 = (x[4:6, :64].view(np.uint32) >> 16).astype(np.uint16)  # truncated bf16 bits: exact to compare
    # Quantised and BF16 tensors are given as their bytes; the writer derives the shape.
    writer.add_tensor("bf16.weight", bf16.view(np.uint8), raw_dtype=GGMLQuantizationType.BF16)
    writer.add_tensor("q8_0.weight", q8[:3], raw_dtype=GGMLQuantizationType.Q8_0)
    # Q4_K rows 0-5 as 2 experts × 3 rows.
    writer.add_tensor("blk.0.ffn_gate_exps.weight", q4[:6].reshape(2, 3, -1), raw_dtype=GGMLQuantizationType.Q4_K)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _version(package: str) -> str:
    from importlib.metadata import version
    return version(package)


if __name__ == "__main__":
    main()
