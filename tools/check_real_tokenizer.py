#!/usr/bin/env python3
"""Cross-checks Jindou's tokenizer against Hugging Face `tokenizers` on a real Qwen2/Qwen3
vocabulary (151k tokens), built from the `ggml-vocab-qwen2.gguf` that the llama-cpp-python
sdist on PyPI ships, with Qwen2's tokenizer.json pipeline (NFC, Qwen2 regex, ByteLevel).

    swift build && /work/venv/bin/python tools/check_real_tokenizer.py [--jindouctl .build/debug/jindouctl]

Compares ids for the fixture corpus plus llama.cpp's own tokenizer test input; prints a
summary and exits 1 on any difference. Not run by `swift test` (the vocabulary is large).
"""
import argparse
import json
import os
import subprocess
import sys

import gguf
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

sys.path.insert(0, os.path.dirname(__file__))
import fixture_text  # noqa: E402


def build_qwen2_tokenizer(gguf_path: str) -> Tokenizer:
    reader = gguf.GGUFReader(gguf_path)

    def field(name):
        f = reader.fields[name]
        return [bytes(f.parts[i]).decode("utf-8") if f.types[-1] == gguf.GGUFValueType.STRING else f.parts[i][0]
                for i in f.data]

    tokens = field("tokenizer.ggml.tokens")
    types = field("tokenizer.ggml.token_type")
    merges = field("tokenizer.ggml.merges")
    vocab = {t: i for i, (t, kind) in enumerate(zip(tokens, types)) if kind == 1}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges], ignore_merges=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(fixture_text.QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    specials = [AddedToken(t, special=True, normalized=False) for t, kind in zip(tokens, types) if kind != 1]
    tokenizer.add_special_tokens(specials)
    return tokenizer


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jindouctl", default=".build/debug/jindouctl")
    parser.add_argument("--keep", metavar="DIR", help="also write the built tokenizer.json here")
    args = parser.parse_args()
    assets = fixture_text.fetch_llama_cpp_assets(os.path.join(os.environ.get("TMPDIR", "/tmp"), "jindou-llama-cpp-assets"))
    tokenizer = build_qwen2_tokenizer(assets["qwen2_vocab"])
    directory = args.keep or os.path.join(os.environ.get("TMPDIR", "/tmp"), "jindou-qwen2-real")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "tokenizer.json")
    tokenizer.save(path)
    texts = fixture_text.corpus()
    # llama.cpp's own tokenizer test inputs for this vocabulary.
    texts += open(assets["qwen2_vocab_inputs"], encoding="utf-8").read().split("\n__ggml_vocab_test__\n")
    expected = [tokenizer.encode(t, add_special_tokens=False).ids for t in texts]
    output = subprocess.run([args.jindouctl, "tokenize", "--tokenizer", path, "--batch"], input=json.dumps(texts).encode(),
                            capture_output=True, check=True).stdout
    actual = json.loads(output)
    bad = [(t, e, a) for t, e, a in zip(texts, expected, actual) if e != a]
    print(f"real Qwen2 vocabulary ({tokenizer.get_vocab_size()} tokens): {len(texts) - len(bad)}/{len(texts)} texts identical")
    for t, e, a in bad[:5]:
        print(f"  differs: {t!r}\n    tokenizers {e}\n    jindou     {a}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
