#!/usr/bin/env python3
"""Writes GGUF fixtures with llama.cpp's own converter (`convert_hf_to_gguf.py`), so the
tests load files Jindou did not write itself.

    /work/venv/bin/python tools/fixture_gguf.py --llama-cpp /path/to/llama.cpp

`--llama-cpp` is a llama.cpp source tree (e.g. the copy vendored in the `llama-cpp-python`
sdist on PyPI: `vendor/llama.cpp`); its `gguf-py` is used, as the converter itself does.
Needs torch, transformers and numpy (the converter's own requirements).

Writes into `Tests/Fixtures/gguf/`:
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

One adjustment to the converter, and only one: it identifies the BPE pre-tokenizer by
hashing the token ids a known text encodes to (`get_vocab_base_pre`), which works for
released vocabularies only. The fixtures' tiny vocabularies keep their family's
pre-tokenizer, so when the hash is unknown this script names the pre-tokenizer from the
regex in tokenizer.json instead (refusing any regex it does not know). Everything else —
tensor names, layouts, metadata, the token list, merges, special ids, chat template — is
the converter's own output. Deterministic: the same inputs give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "Tests" / "Fixtures"

# tokenizer.json pre-tokenizer regexes → llama.cpp's `tokenizer.ggml.pre` names
# (src/llama-vocab.cpp lists the regex each name stands for).
KNOWN_PRE_TOKENIZERS = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "qwen2",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "glm4",
}

CONVERSIONS = [
    # (fixture directory, output file name, --outtype)
    ("qwen3-moe-tiny-sharded", "qwen3-moe-tiny-sharded-f32.gguf", "f32"),
    ("glm4-moe-tiny", "glm4-moe-tiny-f32.gguf", "f32"),
    ("glm4-moe-tiny-legacy", "glm4-moe-tiny-legacy-f32.gguf", "f32"),
]


def pre_tokenizer_regex(directory: Path) -> str | None:
    tokenizer = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    pre = tokenizer.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    for step in steps:
        if step.get("type") == "Split":
            return step.get("pattern", {}).get("Regex")
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-cpp", type=Path, required=True, help="llama.cpp source tree")
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
            regex = pre_tokenizer_regex(Path(self.dir_model))
            if regex not in KNOWN_PRE_TOKENIZERS:
                raise
            name = KNOWN_PRE_TOKENIZERS[regex]
            print(f"fixture_gguf: tiny vocabulary, pre-tokenizer named '{name}' from its tokenizer.json regex")
            return name

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre

    for fixture, name, outtype in CONVERSIONS:
        directory = FIXTURES / fixture
        out = FIXTURES / "gguf" / name
        out.parent.mkdir(exist_ok=True)
        sys.argv = [str(converter), str(directory), "--outtype", outtype, "--outfile", str(out)]
        try:
            runpy.run_path(str(converter), run_name="__main__")
        except SystemExit as exit:
            if exit.code not in (None, 0):
                raise
        print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
