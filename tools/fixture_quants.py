#!/usr/bin/env python3
"""Writes the GGUF block-quantisation fixtures (Tests/Fixtures/quants) for every ggml block
format Jindou reads: blocks llama.cpp's own quantiser wrote from varied float rows, random
valid blocks, and both decoded by the `gguf` package (checked bit for bit against ggml's
`dequantize_row_*`), with a manifest of ggml's type traits and sha256s.

    /work/venv/bin/pip install gguf numpy
    /work/venv/bin/python tools/fixture_quants.py --llama-cpp /path/to/llama.cpp

`--llama-cpp` is a llama.cpp source tree, e.g. `vendor/llama.cpp` of the llama-cpp-python
sdist on PyPI. This script compiles ggml.c + ggml-quants.c (+ ggml-threading.cpp) from it
into a small shared library and calls it through ctypes:
- `ggml_quantize_chunk(type, …, imatrix)` — what `llama-quantize` runs — writes the
  encoded rows. Without an importance matrix for every type except those
  `ggml_quantize_requires_imatrix` names (IQ2_XXS, IQ2_XS, IQ1_S) and IQ1_M (which
  llama-quantize also refuses without one); those get random positive importances
  (`imatrix.f32`). Types whose encoder takes importances also get `*.imatrix.bin`.
- `dequantize_row_<type>` checks the `gguf` package's `quants.dequantize` bit for bit,
  and the `gguf` package's output is what the fixtures store.
- `ggml_type_size`, `ggml_blck_size`, `ggml_type_name` give the manifest's traits;
  `vec_dot_type` is read from `type_traits_cpu` in ggml-cpu/ggml-cpu.c.
The library is compiled with `-ffp-contract=off`: C compilers may otherwise fuse a*b+c
into one FMA where the CPU has it, which changes the last bit of some scales; Swift never
fuses, so the reference does not either.

Rows: `input.f32` (10 × 1024: normal weights at expert scale, uniform, heavy tails,
all-positive and all-negative, sparse with exact zeros, zero / constant super-blocks and a
constant 32-block, f16-subnormal scales, large values) for every type, and `input.odd.f32`
(4 × 1120 = 35 blocks of 32, not whole super-blocks) for the 32-weight formats. Random
blocks (`*.random.bin`): random bytes with finite f16 scales; the IQ grid formats' indices
cycle through every grid entry (so every entry of every table is decoded), their signs and
scales random; TQ trits and MXFP4 exponents in range. Output is deterministic.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, quants

from gen_ggml_tables import source_label

ROW = 1024  # 4 super-blocks, 32 blocks of 32
ODD_ROW = 1120  # 35 blocks of 32: 4 super-blocks and 3 blocks more

# Jindou's BlockFormat cases, in ggml type-id order (names as ggml_type_name spells them).
FORMATS = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq2_xxs", "iq2_xs",
           "iq3_xxs", "iq1_s", "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "iq1_m", "tq1_0", "tq2_0", "mxfp4"]
# Formats Jindou encodes, and those of them whose ggml encoder uses importances.
ENCODED = {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_nl", "iq4_xs",
           "tq1_0", "tq2_0", "mxfp4"}
IMPORTANCE = {"q4_0", "q4_1", "q5_0", "q5_1", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_nl", "iq4_xs"}
# llama-quantize refuses IQ1_M without an imatrix although ggml_quantize_chunk does not.
NEEDS_IMATRIX_ALSO = {"iq1_m"}
# Byte offsets of each block's f16 fields (ggml-common.h), made finite in random blocks.
HALF_OFFSETS = {"q4_0": [0], "q4_1": [0, 2], "q5_0": [0], "q5_1": [0, 2], "q8_0": [0], "q2_K": [80, 82],
                "q3_K": [108], "q4_K": [0, 2], "q5_K": [0, 2], "q6_K": [208], "iq2_xxs": [0], "iq2_xs": [0],
                "iq3_xxs": [0], "iq1_s": [0], "iq4_nl": [0], "iq3_s": [0], "iq2_s": [0], "iq4_xs": [0], "iq1_m": [],
                "tq1_0": [52], "tq2_0": [64], "mxfp4": []}


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


def odd_rows(seed: int) -> np.ndarray:
    """Rows of 35 blocks of 32 (not whole super-blocks), for the 32-weight formats."""
    rng = np.random.default_rng(seed + 1)
    out = [rng.normal(0, 1.0, ODD_ROW)]
    heavy = rng.standard_t(2.5, ODD_ROW) * 0.05
    heavy[rng.choice(ODD_ROW, 12, replace=False)] *= 40
    out.append(heavy)
    special = rng.normal(0, 0.2, ODD_ROW)
    special[0:32] = 0.0                                         # a zero block
    special[32:64] = 0.7                                        # a constant block
    special[64:96] = -2.5
    special[1088:1120] = rng.normal(0, 1e-6, 32)                # a subnormal-scale last block
    out.append(special)
    out.append(rng.normal(0, 300.0, ODD_ROW))
    return np.stack(out).astype(np.float32)


def importances(seed: int, n: int) -> np.ndarray:
    """Random positive importances (an imatrix's per-column mean squared activations)."""
    return np.exp(np.random.default_rng(seed + 2 + n).normal(0, 1, n)).astype(np.float32)


class GGML:
    """ggml's quantisers, decoders and type traits through ctypes."""

    def __init__(self, source: Path, work: Path):
        ggml = source / "ggml"
        version = ggml_version(source)
        (work / "ggml-version.h").write_text(f'#pragma once\n#define GGML_VERSION "{version}"\n#define GGML_COMMIT "unknown"\n')
        flags = ["-O2", "-ffp-contract=off", "-fPIC", "-I", str(work), "-I", str(ggml / "include"), "-I", str(ggml / "src")]
        objects = []
        for name, compiler in [("ggml.c", "gcc"), ("ggml-quants.c", "gcc"), ("ggml-threading.cpp", "g++")]:
            obj = work / (name + ".o")
            subprocess.run([compiler, *flags, "-w", "-c", str(ggml / "src" / name), "-o", str(obj)], check=True)
            objects.append(str(obj))
        library = work / "libggml-quants-ref.so"
        # The few backend functions ggml.c references are never called here: leave them unresolved.
        subprocess.run(["g++", "-shared", *objects, "-o", str(library), "-lm", "-Wl,--unresolved-symbols=ignore-all"], check=True)
        lib = ctypes.CDLL(str(library), mode=os.RTLD_LAZY)
        lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                            ctypes.c_int64, ctypes.c_void_p]
        lib.ggml_quantize_chunk.restype = ctypes.c_size_t
        lib.ggml_type_size.argtypes = [ctypes.c_int]
        lib.ggml_type_size.restype = ctypes.c_size_t
        lib.ggml_blck_size.argtypes = [ctypes.c_int]
        lib.ggml_blck_size.restype = ctypes.c_int64
        lib.ggml_type_name.argtypes = [ctypes.c_int]
        lib.ggml_type_name.restype = ctypes.c_char_p
        lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
        lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
        self.lib = lib
        self.version = version
        self.vec_dot_types = vec_dot_types(ggml / "src" / "ggml-cpu" / "ggml-cpu.c")

    def type_id(self, name: str) -> int:
        return int(getattr(GGMLQuantizationType, name.upper()))

    def quantize(self, name: str, x: np.ndarray, imatrix: np.ndarray | None) -> np.ndarray:
        t = self.type_id(name)
        x = np.ascontiguousarray(x, dtype=np.float32)
        nrows, n = x.shape
        row_size = n // self.lib.ggml_blck_size(t) * self.lib.ggml_type_size(t)
        out = np.zeros((nrows, row_size), dtype=np.uint8)
        w = None if imatrix is None else np.ascontiguousarray(imatrix, dtype=np.float32)
        written = self.lib.ggml_quantize_chunk(t, x.ctypes.data, out.ctypes.data, 0, nrows, n,
                                               None if w is None else w.ctypes.data)
        assert written == out.size, (name, written, out.size)
        return out

    def dequantize(self, name: str, q: np.ndarray, n: int) -> np.ndarray:
        function = getattr(self.lib, "dequantize_row_" + name)
        function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        function.restype = None
        out = np.empty((q.shape[0], n), dtype=np.float32)
        for r in range(q.shape[0]):
            row = np.ascontiguousarray(q[r])
            y = np.empty(n, dtype=np.float32)
            function(row.ctypes.data, y.ctypes.data, n)
            out[r] = y
        return out


def ggml_version(source: Path) -> str:
    cmake = (source / "ggml" / "CMakeLists.txt").read_text()
    parts = [re.search(rf"set\(GGML_VERSION_{p}\s+(\d+)\)", cmake) for p in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(m.group(1) for m in parts) if all(parts) else "unknown"


def vec_dot_types(path: Path) -> dict[str, str]:
    """`type_traits_cpu[GGML_TYPE_X].vec_dot_type` for every type that has one."""
    text = path.read_text()
    table = text[text.index("type_traits_cpu[GGML_TYPE_COUNT]"):]
    table = table[:table.index("};")]
    found = {}
    for name, body in re.findall(r"\[GGML_TYPE_(\w+)\]\s*=\s*\{(.*?)\n\s*\},", table, re.DOTALL):
        match = re.search(r"\.vec_dot_type\s*=\s*GGML_TYPE_(\w+)", body)
        if match:
            found[name.lower()] = match.group(1).lower()
    return found


def finite_halves(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random finite f16 bit patterns: normals and subnormals of both signs, scaled-down
    weights and exact zeros (no infinities or NaNs)."""
    bits = rng.integers(0, 1 << 16, n, dtype=np.uint32).astype(np.uint16)
    bits[(bits & 0x7C00) == 0x7C00] &= 0xBFFF                   # exponent 31 → 15: finite
    kind = rng.integers(0, 4, n)
    typical = rng.normal(0, 0.01, n).astype(np.float16).view(np.uint16)
    bits = np.where(kind == 0, typical, bits)
    bits = np.where(rng.random(n) < 0.02, np.uint16(0), bits)
    return bits.astype(np.uint16)


def random_blocks(name: str, type_size: int, nblocks: int, rng: np.random.Generator) -> np.ndarray:
    """`nblocks` random valid blocks of `name` (see the module docstring)."""
    b = rng.integers(0, 256, (nblocks, type_size), dtype=np.uint16).astype(np.uint8)
    for offset in HALF_OFFSETS[name]:
        b[:, offset:offset + 2] = finite_halves(rng, nblocks).view(np.uint8).reshape(nblocks, 2)

    def cycle(count: int, size: int) -> np.ndarray:
        return np.resize(rng.permutation(size), count).reshape(nblocks, -1)

    if name == "iq2_xxs":                                       # 4 index bytes of each 8
        idx = cycle(nblocks * 32, 256).reshape(nblocks, 8, 4)
        view = b[:, 2:].reshape(nblocks, 8, 8)
        view[:, :, :4] = idx
        b[:, 2:] = view.reshape(nblocks, 64)
    elif name == "iq2_xs":                                      # u16: 9-bit index, 7-bit signs
        q = b[:, 2:66].copy().view(np.uint16)
        q[:] = (q & 0xFE00) | cycle(nblocks * 32, 512)
        b[:, 2:66] = q.view(np.uint8)
    elif name == "iq2_s":                                       # 8 low bits + 2 bits in qh
        idx = cycle(nblocks * 32, 1024).reshape(nblocks, 8, 4)
        b[:, 2:34] = (idx & 0xFF).reshape(nblocks, 32)
        b[:, 66:74] = ((idx >> 8) << (2 * np.arange(4))).sum(axis=2)
    elif name == "iq3_xxs":
        b[:, 2:66] = cycle(nblocks * 64, 256)
    elif name == "iq3_s":                                       # 8 low bits + bit k of qh byte
        idx = cycle(nblocks * 64, 512).reshape(nblocks, 8, 8)
        b[:, 2:66] = (idx & 0xFF).reshape(nblocks, 64)
        b[:, 66:74] = ((idx >> 8) << np.arange(8)).sum(axis=2)
    elif name == "iq1_s":                                       # 8 low bits + 3 bits of the qh u16
        idx = cycle(nblocks * 32, 2048).reshape(nblocks, 8, 4)
        b[:, 2:34] = (idx & 0xFF).reshape(nblocks, 32)
        qh = b[:, 34:50].copy().view(np.uint16)
        qh[:] = (qh & 0xF000) | ((idx >> 8) << (3 * np.arange(4))).sum(axis=2)
        b[:, 34:50] = qh.view(np.uint8)
    elif name == "iq1_m":                                       # 8 low bits + 3 bits per nibble of qh
        idx = cycle(nblocks * 32, 2048).reshape(nblocks, 16, 2)
        b[:, 0:32] = (idx & 0xFF).reshape(nblocks, 32)
        qh = b[:, 32:48]
        b[:, 32:48] = (qh & 0x88) | (idx[:, :, 0] >> 8) | ((idx[:, :, 1] >> 8) << 4)
        sc = b[:, 48:56].copy().view(np.uint16)                 # the f16 scale in the top nibbles
        half = finite_halves(rng, nblocks)
        for k in range(4):
            sc[:, k] = (sc[:, k] & 0x0FFF) | (((half >> (4 * k)) & 0xF) << 12)
        b[:, 48:56] = sc.view(np.uint8)
    elif name == "tq1_0":                                       # base-3 fractions of valid trits
        five = rng.integers(0, 243, (nblocks, 48))
        four = rng.integers(0, 81, (nblocks, 4)) * 3
        b[:, 0:48] = (five * 256 + 242) // 243
        b[:, 48:52] = (four * 256 + 242) // 243
    elif name == "tq2_0":
        trits = rng.integers(0, 3, (nblocks, 64, 4))
        b[:, 0:64] = (trits << (2 * np.arange(4))).sum(axis=2)
    elif name == "mxfp4":
        b[:, 0] = rng.integers(100, 155, nblocks)               # 2^-28 … 2^26 scales
    return b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-cpp", required=True, type=Path, help="llama.cpp source tree (contains ggml/src/ggml-quants.c)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "Tests" / "Fixtures" / "quants")
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()

    x, x_odd = rows(args.seed), odd_rows(args.seed)
    imatrix, imatrix_odd = importances(args.seed, ROW), importances(args.seed, ODD_ROW)
    inputs = {"input.f32": x, "input.odd.f32": x_odd, "imatrix.f32": imatrix[None, :], "imatrix.odd.f32": imatrix_odd[None, :]}
    files = {name: a.tobytes() for name, a in inputs.items()}
    formats = {}
    rng = np.random.default_rng(args.seed + 100)
    with tempfile.TemporaryDirectory() as work:
        ggml = GGML(args.llama_cpp, Path(work))
        for name in FORMATS:
            t = ggml.type_id(name)
            qtype = GGMLQuantizationType(t)
            assert ggml.lib.ggml_type_name(t).decode() == name, (name, ggml.lib.ggml_type_name(t))
            block, type_size = int(ggml.lib.ggml_blck_size(t)), int(ggml.lib.ggml_type_size(t))
            requires = bool(ggml.lib.ggml_quantize_requires_imatrix(t))
            uses_imatrix = requires or name in NEEDS_IMATRIX_ALSO
            key = name.lower()
            fixtures = []

            def add(kind: str, encoded: np.ndarray, source: str | None, weights: str | None, rows_: int, columns: int,
                    store_decoded: bool = True) -> None:
                stem = f"{key}{'' if kind == 'ggml' else '.' + kind}"
                decoded = quants.dequantize(encoded, qtype).astype(np.float32).reshape(rows_, columns)
                reference = ggml.dequantize(name, encoded, columns)
                assert np.array_equal(decoded.view(np.uint32), reference.view(np.uint32)), f"gguf ≠ ggml dequantize_row_{name} ({kind})"
                entry = {"kind": "random" if kind == "random" else "ggml", "rows": rows_, "columns": columns,
                         "input": source, "imatrix": weights, "encoded": stem + ".bin"}
                files[stem + ".bin"] = encoded.tobytes()
                if store_decoded:
                    entry["decoded"] = stem + ".dequantized.f32"
                    files[stem + ".dequantized.f32"] = decoded.tobytes()
                if source is not None:
                    original = inputs[source].astype(np.float64)
                    entry["relative_rmse"] = float(np.sqrt(((decoded - original) ** 2).mean() / (original ** 2).mean()))
                fixtures.append(entry)

            main_weights = imatrix if uses_imatrix else None
            add("ggml", ggml.quantize(name, x, main_weights), "input.f32", "imatrix.f32" if uses_imatrix else None, *x.shape)
            if block == 32:
                add("odd", ggml.quantize(name, x_odd, imatrix_odd if uses_imatrix else None), "input.odd.f32",
                    "imatrix.odd.f32" if uses_imatrix else None, *x_odd.shape)
            if name in IMPORTANCE:
                add("imatrix", ggml.quantize(name, x, imatrix), "input.f32", "imatrix.f32", *x.shape, store_decoded=False)
                if block == 32:
                    add("odd.imatrix", ggml.quantize(name, x_odd, imatrix_odd), "input.odd.f32", "imatrix.odd.f32",
                        *x_odd.shape, store_decoded=False)
            # Enough random blocks that the IQ formats' indices visit every grid entry.
            grid_entries = {"iq2_xxs": 256 / 32, "iq2_xs": 512 / 32, "iq2_s": 1024 / 32, "iq3_xxs": 256 / 64,
                            "iq3_s": 512 / 64, "iq1_s": 2048 / 32, "iq1_m": 2048 / 32}.get(name, 0)
            nblocks = max(4 * ROW // block, int(grid_entries))
            random = random_blocks(name, type_size, nblocks, rng).reshape(nblocks * block // ROW, -1)
            add("random", random, None, None, random.shape[0], ROW)

            formats[key] = {
                "ggml_type": t, "ggml_name": name, "block_size": block, "type_size": type_size,
                "vec_dot_type": ggml.vec_dot_types[name.lower()], "requires_imatrix": requires,
                "quantized_with_imatrix": uses_imatrix, "fixtures": fixtures,
            }
        # The activation formats the vec_dot_types name, and every other ggml type id (none
        # of which is a Jindou block format).
        activations = {}
        for name in sorted({f["vec_dot_type"] for f in formats.values()}):
            t = ggml.type_id(name)
            activations[name] = {"ggml_type": t, "block_size": int(ggml.lib.ggml_blck_size(t)),
                                 "type_size": int(ggml.lib.ggml_type_size(t))}
        others = {member.name.lower(): int(member) for member in GGMLQuantizationType
                  if member.name.lower() not in formats}

    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (args.out / name).write_bytes(data)
    import gguf
    manifest = {
        "generator": "tools/fixture_quants.py",
        "ggml_version": ggml.version,
        "llama_cpp": source_label(args.llama_cpp),
        "gguf_version": getattr(gguf, "__version__", None) or _version("gguf"),
        "numpy_version": np.__version__,
        "seed": args.seed,
        "rows": int(x.shape[0]),
        "columns": ROW,
        "formats": formats,
        "activation_formats": activations,
        "other_ggml_types": others,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    q8 = np.frombuffer(files["q8_0.bin"], dtype=np.uint8).reshape(x.shape[0], -1)
    q4 = np.frombuffer(files["q4_k.bin"], dtype=np.uint8).reshape(x.shape[0], -1)
    write_gguf(args.out / "small.gguf", x, q8, q4)
    total = sum(len(d) for d in files.values()) + (args.out / "small.gguf").stat().st_size
    print(f"wrote {args.out}: {len(files)} files, {total / 1e6:.2f} MB; relative RMSE on input.f32: " + ", ".join(
        f"{k} {v['fixtures'][0]['relative_rmse']:.2e}" for k, v in formats.items()))


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
