"""Tokenizer and chat-template fixtures for Jindou's tests (imported by make_fixtures.py).

- Byte-level BPE tokenizers trained by Hugging Face `tokenizers` with the same pipeline as
  Qwen2/Qwen3 (NFC, split by Qwen2's regex, ByteLevel) and GLM4 (its regex), saved as
  tokenizer.json, with the token ids `tokenizers` produces for a varied corpus.
- The real Qwen3 and GLM-4.6 chat templates, taken from the `llama-cpp-python` sdist on
  PyPI (it vendors llama.cpp's models/templates), with the strings transformers'
  `apply_chat_template` renders for a set of conversations.
- A tiny tokenizer (vocab ≤ the model fixtures' 320) plus tokenizer_config.json with the
  real template, written next to each model fixture.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import tarfile
import urllib.request

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

# Pre-tokenizer patterns from the Qwen2 and GLM-4 tokenizer.json files.
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
GLM4_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# gpt-oss's tokenizer.json (o200k_harmony, tiktoken's o200k_base regex): no normaliser.
O200K_PATTERN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
                 r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
                 r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# DeepSeek-V3's tokenizer.json: no normaliser, three Split regexes in sequence (numbers,
# CJK runs, words), then ByteLevel. The CJK ranges and the CR/LF in the third regex are the
# characters themselves in the real file, not escapes.
DEEPSEEK_V3_PATTERNS = [
    r"\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
    "| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
]

# K-EXAONE's tokenizer.json regex (llama.cpp's LLAMA_VOCAB_PRE_TYPE_EXAONE_MOE quotes it as the
# original): letters with their marks, words joined by single spaces, one digit at a time.
EXAONE_MOE_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}"
                      r"| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+")

# Trinity (afmoe): digits in threes from the right, runs of CJK/Thai/Lao/Khmer/Myanmar/
# Javanese/Hangul, then DeepSeek-V3's word regex. The first is the digit-grouping regex
# llama.cpp's unicode.cpp quotes for this split; the code points of the second are those of
# llama.cpp's LLAMA_VOCAB_PRE_TYPE_AFMOE (src/llama-vocab.cpp), whose own digit split is
# custom code (`\p{AFMoE_digits}`): for GGUF files llama.cpp's tokenizer is the reference.
AFMOE_PATTERNS = [
    r"\d{1,3}(?=(?:\d{3})*\b)",
    "[\u4e00-\u9fff\u3400-\u4dbf\u8c48-\ufaff\u3040-\u309f\u30a0-\u30ff\uff65-\uff9f\u2f00-\u2fdf\u0e40-\u0e7f"
    "\u0e80-\u0eff\u1780-\u17ff\u1000-\u109f\uaa60-\uaa7f\ua9e0-\ua9ff\uac00-\ud7af\u1100-\u11ff]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
    "| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
]

# Added tokens: (content, special) as the real tokenizers declare them.
# MiniMax-M2: the tokens its chat template writes (BOS, role start, EOS, thinking, tool calls).
MINIMAX_ADDED = [("]~!b[", True), ("]~b]", True), ("[e~[", True), ("<think>", False), ("</think>", False),
                 ("<minimax:tool_call>", False), ("</minimax:tool_call>", False)]
# gpt-oss: the harmony format's tokens (all special in its tokenizer.json).
HARMONY_ADDED = [("<|startoftext|>", True), ("<|endoftext|>", True), ("<|return|>", True), ("<|constrain|>", True),
                 ("<|channel|>", True), ("<|start|>", True), ("<|end|>", True), ("<|message|>", True), ("<|call|>", True)]
QWEN_ADDED = [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True), ("<think>", False),
              ("</think>", False), ("<tool_call>", False), ("</tool_call>", False), ("<tool_response>", False),
              ("</tool_response>", False)]
GLM_ADDED = [("<|endoftext|>", True), ("[gMASK]", True), ("<sop>", True), ("<|system|>", True), ("<|user|>", True),
             ("<|assistant|>", True), ("<|observation|>", True), ("<think>", False), ("</think>", False),
             ("<tool_call>", False), ("</tool_call>", False), ("<tool_response>", False), ("</tool_response>", False),
             ("<arg_key>", False), ("</arg_key>", False), ("<arg_value>", False), ("</arg_value>", False)]
# DeepSeek-V3: BOS and EOS are ids 0 and 1 (as config.json's bos/eos_token_id say); the
# others are the tokens DeepSeek-V3.1's chat template writes. `<｜…｜>` tokens are marked
# special (llama.cpp's converter makes them control tokens whatever tokenizer.json says).
DEEPSEEK_ADDED = [("<｜begin▁of▁sentence｜>", True), ("<｜end▁of▁sentence｜>", True), ("<｜▁pad▁｜>", True),
                  ("<｜User｜>", True), ("<｜Assistant｜>", True), ("<think>", False), ("</think>", False),
                  ("<｜tool▁calls▁begin｜>", True), ("<｜tool▁calls▁end｜>", True), ("<｜tool▁call▁begin｜>", True),
                  ("<｜tool▁call▁end｜>", True), ("<｜tool▁sep｜>", True), ("<｜tool▁output▁begin｜>", True),
                  ("<｜tool▁output▁end｜>", True)]
# dots.llm1: its chat template's role markers and end of text.
DOTS1_ADDED = [("<|endoftext|>", True), ("<|system|>", True), ("<|endofsystem|>", True), ("<|userprompt|>", True),
               ("<|endofuserprompt|>", True), ("<|response|>", True), ("<|endofresponse|>", True)]
# Hunyuan-A13B: the tokens its chat template writes.
HUNYUAN_ADDED = [("<|startoftext|>", True), ("<|eos|>", True), ("<|extra_0|>", True), ("<|extra_4|>", True),
                 ("<tool_calls>", False), ("</tool_calls>", False), ("<tool_response>", False), ("</tool_response>", False),
                 ("<think>", False), ("</think>", False)]
# K-EXAONE / EXAONE 4: role markers in [|…|], end of turn, thinking.
EXAONE_ADDED = [("[BOS]", True), ("[|endofturn|]", True), ("[|system|]", True), ("[|user|]", True), ("[|assistant|]", True),
                ("[|tool|]", True), ("<think>", False), ("</think>", False)]
# Kimi-K2: [BOS] and [EOS] at 0 and 1, then the tokens its chat template writes.
KIMI_ADDED = [("[BOS]", True), ("[EOS]", True), ("<|im_end|>", True), ("<|im_user|>", True), ("<|im_assistant|>", True),
              ("<|im_system|>", True), ("<|im_middle|>", True), ("<|tool_calls_section_begin|>", True),
              ("<|tool_calls_section_end|>", True), ("<|tool_call_begin|>", True), ("<|tool_call_argument_begin|>", True),
              ("<|tool_call_end|>", True)]
# Kimi-K2.5 / K2.6: Kimi-K2's tokens and the media tokens its templates and processor use.
KIMI_VL_ADDED = KIMI_ADDED + [("<|media_start|>", True), ("<|media_content|>", True), ("<|media_end|>", True),
                              ("<|media_pad|>", True)]
# Qwen3.5's pre-tokenizer (transformers' models/qwen3_5/tokenization_qwen3_5.py PRETOKENIZE_REGEX):
# Qwen2's with combining marks kept inside words.
from transformers.models.qwen3_5.tokenization_qwen3_5 import PRETOKENIZE_REGEX as QWEN35_PATTERN  # noqa: E402
TOKENIZER_PATTERNS = {"qwen3_vl": QWEN2_PATTERN, "qwen3_5": QWEN35_PATTERN}
# Qwen2-VL / Qwen2.5-VL / Qwen3-VL: the vision and box tokens sit between <|im_end|> and <tool_call>.
QWEN_VL_ADDED = [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True), ("<|object_ref_start|>", True),
                 ("<|object_ref_end|>", True), ("<|box_start|>", True), ("<|box_end|>", True), ("<|quad_start|>", True),
                 ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
                 ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False), ("</tool_call>", False),
                 ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False),
                 ("<|repo_name|>", False), ("<|file_sep|>", False), ("<tool_response>", False),
                 ("</tool_response>", False), ("<think>", False), ("</think>", False)]

LLAMA_CPP_PYTHON = "llama-cpp-python"
TEMPLATE_FILES = {"qwen3": "models/templates/Qwen-Qwen3-0.6B.jinja", "glm4": "models/templates/GLM-4.6.jinja",
                  # llama.cpp vendors no Qwen2/2.5/3-VL template; Qwen3.5's is Qwen's own vision-aware one
                  # (<|vision_start|><|image_pad|><|vision_end|> per image, add_vision_id).
                  "qwen3_vl": "models/templates/Qwen3.5-4B.jinja",
                  # The released templates of the GQA/MLA families of issue 19/20 that llama.cpp vendors.
                  "gpt_oss": "models/templates/openai-gpt-oss-120b.jinja", "minimax_m2": "models/templates/MiniMax-M2.jinja",
                  "glm4_moe_lite": "models/templates/GLM-4.7-Flash.jinja",
                  # DeepSeek-V3.1 and V3.2, Kimi-K2 (issue 20's MLA families).
                  "deepseek_v31": "models/templates/deepseek-ai-DeepSeek-V3.1.jinja",
                  "deepseek_v32": "models/templates/deepseek-ai-DeepSeek-V3.2.jinja",
                  "kimi_k2": "models/templates/Kimi-K2-Instruct.jinja",
                  "kimi_k2_thinking": "models/templates/Kimi-K2-Thinking.jinja"}
# Released templates llama.cpp does not vendor and vLLM's sdist ships (its examples/).
VLLM_VERSION = "0.33.0"
VLLM_TEMPLATE_FILES = {"hunyuan_a13b": "examples/tool_chat_template_hunyuan_a13b.jinja"}
# The clock the template goldens are rendered at (templates that call strftime_now, as
# Hunyuan-A13B's does when given tools): a Monday, so weekday tables are exercised.
TEMPLATE_CLOCK = (2026, 1, 5, 9, 30, 15)


def fetch_sdist_members(package: str, version: str | None, cache: str, wanted: dict[str, str]) -> dict[str, str]:
    """Downloads `package`'s sdist (`version`, or the newest) from PyPI once and extracts the
    members whose paths end with `wanted`'s values into `cache`. Returns {name: path}."""
    os.makedirs(cache, exist_ok=True)
    paths = {name: os.path.join(cache, os.path.basename(member)) for name, member in wanted.items()}
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    with urllib.request.urlopen(f"https://pypi.org/pypi/{package}/json") as response:
        info = json.load(response)
    version = version or info["info"]["version"]
    sdist = next(u for u in info["releases"][version] if u["packagetype"] == "sdist")
    url = sdist["url"]
    if not url.startswith("http"):  # some mirrors answer with a relative path
        url = "https://files.pythonhosted.org/packages/" + url.split("packages/", 2)[-1]
    print(f"fetching {package} {version} sdist for {', '.join(wanted)}")
    with urllib.request.urlopen(url) as response:
        data = response.read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        names = archive.getnames()
        for name, member in wanted.items():
            path = next(m for m in names if m.endswith(member))
            with archive.extractfile(path) as source, open(paths[name], "wb") as target:
                target.write(source.read())
    with open(os.path.join(cache, f"SOURCE-{package}.txt"), "w") as f:
        f.write(f"{package} {version} sdist from PyPI: {url}\n")
    return paths


def fetch_llama_cpp_assets(cache: str) -> dict[str, str]:
    """The chat templates and the Qwen2 vocabulary GGUF llama.cpp vendors, from the
    llama-cpp-python sdist, and the templates of VLLM_TEMPLATE_FILES from vLLM's. Returns
    {name: path}."""
    wanted = dict(TEMPLATE_FILES, qwen2_vocab="models/ggml-vocab-qwen2.gguf",
                  qwen2_vocab_inputs="models/ggml-vocab-qwen2.gguf.inp")
    paths = fetch_sdist_members(LLAMA_CPP_PYTHON, None, cache, {n: "vendor/llama.cpp/" + m for n, m in wanted.items()})
    return dict(paths, **fetch_sdist_members("vllm", VLLM_VERSION, cache, VLLM_TEMPLATE_FILES))


def corpus() -> list[str]:
    """Varied text: English, Chinese, code, emoji, whitespace runs, numbers, contractions,
    combining characters (NFC), special tokens inline, mixed scripts."""
    lines = [
        "Hello, world! This is a test of the tokenizer.",
        "I'm sure you'll find it's what we've wanted; they'd say we're done, wouldn't they?",
        "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG'S BACK. It'S LOUD.",
        "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
        "人工智能正在改变我们的生活方式，分布式推理让大模型运行在普通机器上。",
        "混合专家模型（MoE）在每一层只激活少数专家。",
        "日本語のテキストも少し：東京は大きな都市です。한국어 문장도 있습니다.",
        "Emoji: 😀😃😄 👩‍💻 🇨🇳 🏳️‍🌈 ❤️ 🤖🚀✨ and text after.",
        "Whitespace    runs\t\ttabs\n\n\nnewlines   \n  trailing   ",
        "   leading spaces and a single trailing space ",
        "\n\n\n",
        "    ",
        "numbers: 0 7 42 1234567890 3.14159 -273.15 1e-9 0x1F 1,000,000",
        "Ünïcödé café naïve résumé coöperate façade jalapeño",
        "Combining: e\u0301 a\u0300 o\u0308 n\u0303 — should normalise to é à ö ñ",
        "Mixed: Swift的并发模型 uses actors と async/await 😀 42个专家",
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n4<|im_end|>",
        "Special tokens glued:<|endoftext|><|endoftext|>x<tool_call>{\"name\": \"f\"}</tool_call>",
        "def fibonacci(n: int) -> int:\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
        "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }  // dot product",
        "let router = Router(configuration: config, gate: weights)  /* Swift */",
        "SELECT id, name FROM users WHERE age >= 21 ORDER BY name DESC;",
        "{\"key\": [1, 2.5, true, null], \"nested\": {\"a\": \"b\"}}",
        "URLs: https://example.com/path?q=1&r=two#frag and user@example.org",
        "Punctuation!!! ??? ... --- ___ *** ### @@@ $$$ %%% ^^^ &&& ((()))",
        "A line with CR\r\nand CRLF endings\rand lone CR.",
        "Zero\u200bwidth\u200bspaces and non\u00a0breaking\u00a0spaces.",
        "Греческий и русский текст: Привет, мир! Γειά σου Κόσμε!",
        "العربية: مرحبا بالعالم. עברית: שלום עולם.",
        "Math: ∀x∈ℝ, x² ≥ 0; ∑ᵢ aᵢ = ∫ f(x) dx ≈ π/4",
        "Tabs\tand\tmore\ttabs\t\t\tat\tthe\tend\t",
        "a" * 40 + " " + "ab" * 20 + " " + "1" * 25,
        "",
    ]
    # Some real code and prose from the standard library, as a larger, unseen sample.
    import json as json_module
    import textwrap
    lines += inspect.getsource(textwrap).split("\n\n")[:12]
    lines += inspect.getsource(json_module).split("\n\n")[:6]
    return lines


def training_corpus() -> list[str]:
    """What the tokenizers learn their merges from (overlaps the test corpus only in part)."""
    import argparse
    import collections
    import difflib
    text = [inspect.getsource(m) for m in (argparse, collections, difflib)]
    chinese = ("大模型推理需要大量内存带宽。专家并行把专家分布到多台机器上，每一层都要在协调器和工作节点之间交换数据。"
               "我们用普通的机器来运行最大的开源模型，这是一个小团队的目标。今天天气很好，我们去公园散步吧。") * 20
    emoji = "😀 🚀 ✨ 🤖 👩‍💻 " * 50
    return text + [chinese, emoji] + corpus()[:10]


def train(pattern: str | list[str], vocab_size: int, added: list[tuple[str, bool]], texts: list[str],
          nfc: bool = True, leading_specials: int = 0) -> Tokenizer:
    """A byte-level BPE: NFC (unless `nfc` is false), one Split per pattern, ByteLevel. The
    first `leading_specials` added tokens are given to the trainer, which puts them at ids
    0, 1, …; the rest are added after the learned vocabulary."""
    tokenizer = Tokenizer(models.BPE())
    if nfc:
        tokenizer.normalizer = normalizers.NFC()
    patterns = [pattern] if isinstance(pattern, str) else pattern
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(p), behavior="isolated", invert=False) for p in patterns]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    from tokenizers import AddedToken
    leading = [AddedToken(c, special=True, normalized=False) for c, _ in added[:leading_specials]]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=leading)
    tokenizer.train_from_iterator(texts, trainer)
    for content, special in added[leading_specials:]:
        token = AddedToken(content, special=special, normalized=False)
        if special:
            tokenizer.add_special_tokens([token])
        else:
            tokenizer.add_tokens([token])
    return tokenizer


def tokenizer_golden(tokenizer: Tokenizer, lines: list[str]) -> dict:
    cases = []
    for text in lines:
        encoding = tokenizer.encode(text, add_special_tokens=False)
        cases.append({
            "text": text,
            "ids": encoding.ids,
            "decoded": tokenizer.decode(encoding.ids, skip_special_tokens=False),
            "decoded_skip_special": tokenizer.decode(encoding.ids, skip_special_tokens=True),
        })
    return {"generator": "tools/make_fixtures.py (fixture_text.py)", "cases": cases}


def write_tokenizer_fixtures(root: str):
    """Tests/Fixtures/tokenizers/{qwen-style,glm-style}: trained tokenizers + goldens."""
    for name, pattern, added, nfc in (("qwen-style", QWEN2_PATTERN, QWEN_ADDED, True), ("glm-style", GLM4_PATTERN, GLM_ADDED, True),
                                      ("o200k-style", O200K_PATTERN, HARMONY_ADDED, False)):
        directory = os.path.join(root, "tokenizers", name)
        os.makedirs(directory, exist_ok=True)
        tokenizer = train(pattern, 3000, added, training_corpus(), nfc=nfc)
        tokenizer.save(os.path.join(directory, "tokenizer.json"))
        with open(os.path.join(directory, "golden.json"), "w") as f:
            json.dump(tokenizer_golden(tokenizer, corpus()), f, ensure_ascii=False, indent=1)
        print(f"tokenizer fixture {name}: vocab {tokenizer.get_vocab_size()}")


def conversations() -> list[dict]:
    """Conversations × options rendered by apply_chat_template for the template goldens."""
    weather = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
               "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "城市"},
                                                               "unit": {"type": "string", "enum": ["c", "f"]}},
                              "required": ["city"]}}}
    search = {"type": "function", "function": {"name": "search", "description": "Search the web",
              "parameters": {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer"}}}}}
    simple = [{"role": "user", "content": "Hi there!"}]
    with_system = [{"role": "system", "content": "You are Jindou, a helpful assistant."},
                   {"role": "user", "content": "What is a mixture of experts?"}]
    multi = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"},
             {"role": "assistant", "content": "Hi! How can I help?"},
             {"role": "user", "content": "Tell me a joke about GPUs."}]
    thinking = [{"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "<think>\nAdd two and two.\n</think>\n\nIt is 4."},
                {"role": "user", "content": "And 3+3?"}]
    reasoning_field = [{"role": "user", "content": "Why is the sky blue?"},
                       {"role": "assistant", "content": "Rayleigh scattering.", "reasoning_content": "Short light scatters more."},
                       {"role": "user", "content": "Thanks"}]
    tool_use = [{"role": "system", "content": "Use tools when needed."},
                {"role": "user", "content": "北京天气怎么样？"},
                {"role": "assistant", "content": "",
                 "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "北京", "unit": "c"}}}]},
                {"role": "tool", "content": "{\"temperature\": 21, \"sky\": \"晴\"}"},
                {"role": "assistant", "content": "北京现在21度，晴天。"},
                {"role": "user", "content": "And search for news about it."},
                {"role": "assistant", "content": "Searching.",
                 "tool_calls": [{"type": "function", "function": {"name": "search", "arguments": {"q": "北京 新闻", "n": 3}}},
                                {"type": "function", "function": {"name": "search", "arguments": {"q": "Beijing news", "n": 2}}}]},
                {"role": "tool", "content": "result one"}, {"role": "tool", "content": "result two"}]
    string_arguments = [{"role": "user", "content": "weather?"},
                        {"role": "assistant", "content": None,
                         "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                        {"role": "tool", "content": "sunny"}]
    list_content = [{"role": "user", "content": [{"type": "text", "text": "Part one. "}, {"type": "text", "text": "Part two."}]}]
    cases = []
    for name, messages in (("simple", simple), ("system", with_system), ("multi", multi), ("thinking", thinking),
                           ("reasoning_field", reasoning_field), ("tool_use", tool_use), ("string_arguments", string_arguments),
                           ("list_content", list_content)):
        for tools in (None, [weather, search]):
            for add_generation_prompt in (True, False):
                for enable_thinking in (None, True, False):
                    options = {"add_generation_prompt": add_generation_prompt}
                    if enable_thinking is not None:
                        options["enable_thinking"] = enable_thinking
                    cases.append({"name": name, "messages": messages, "tools": tools, "options": options})
    return cases


def write_template_goldens(root: str, templates: dict[str, str], tokenizer_directories: dict[str, str]):
    """Tests/Fixtures/templates/{name}.jinja + goldens.json rendered by apply_chat_template."""
    import datetime
    from transformers import AutoTokenizer
    from transformers.utils import chat_template_utils

    class FrozenClock(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(*TEMPLATE_CLOCK)
    chat_template_utils.datetime = FrozenClock  # what strftime_now reads
    directory = os.path.join(root, "templates")
    os.makedirs(directory, exist_ok=True)
    goldens = {"generator": "tools/make_fixtures.py (fixture_text.py)",
               "clock": datetime.datetime(*TEMPLATE_CLOCK).strftime("%Y-%m-%d %H:%M:%S"), "templates": {},
               "special_tokens": {}}
    for name, template in templates.items():
        with open(os.path.join(directory, f"{name}.jinja"), "w") as f:
            f.write(template)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_directories[name])
        rendered = []
        for case in conversations():
            try:
                text = tokenizer.apply_chat_template(case["messages"], tools=case["tools"], tokenize=False,
                                                     chat_template=template, **case["options"])
                rendered.append(dict(case, rendered=text))
            except Exception as error:  # a template may refuse some inputs; record that too
                rendered.append(dict(case, error=type(error).__name__))
        goldens["templates"][name] = rendered
        # What apply_chat_template gives the template as bos_token / eos_token.
        goldens["special_tokens"][name] = {key: getattr(tokenizer, key) for key in ("bos_token", "eos_token")
                                           if getattr(tokenizer, key, None) is not None}
        print(f"template {name}: {len(rendered)} renderings, {sum('error' in r for r in rendered)} refusals")
    with open(os.path.join(directory, "goldens.json"), "w") as f:
        json.dump(goldens, f, ensure_ascii=False, indent=1)


def write_model_tokenizer(directory: str, family: str, vocab_size: int, template: str):
    """A tokenizer small enough for a model fixture's vocabulary, and tokenizer_config.json
    with the family's real chat template."""
    pattern, added = {"qwen3": (QWEN2_PATTERN, QWEN_ADDED), "qwen3_vl": (QWEN2_PATTERN, QWEN_VL_ADDED),
                      "qwen3_5": (QWEN35_PATTERN, QWEN_VL_ADDED),
                      "glm4": (GLM4_PATTERN, GLM_ADDED), "gpt_oss": (O200K_PATTERN, HARMONY_ADDED),
                      # MiniMax-M2's tokenizer.json splits with the same o200k regex (llama.cpp: MINIMAX_M2 = GPT4O).
                      "minimax_m2": (O200K_PATTERN, MINIMAX_ADDED)}[family]
    tokenizer = train(pattern, vocab_size - len(added), added, training_corpus(), nfc=family not in ("gpt_oss", "minimax_m2"))
    assert tokenizer.get_vocab_size() <= vocab_size, "tokenizer larger than the model's vocabulary"
    tokenizer.save(os.path.join(directory, "tokenizer.json"))
    eos = {"glm4": "<|user|>", "gpt_oss": "<|return|>", "minimax_m2": "[e~["}.get(family, "<|im_end|>")
    write_tokenizer_config(directory, tokenizer, added,
                           {"tokenizer_class": "PreTrainedTokenizerFast", "chat_template": template, "eos_token": eos,
                            "pad_token": eos if family == "minimax_m2" else "<|endoftext|>", "model_max_length": 256,
                            "clean_up_tokenization_spaces": False})
    return tokenizer


def write_tokenizer_config(directory: str, tokenizer, added, fields: dict):
    """tokenizer_config.json: `fields`, then `added_tokens_decoder` for the (content,
    special) pairs in `added`, as transformers writes it."""
    config = dict(fields)
    config["added_tokens_decoder"] = {str(tokenizer.token_to_id(c)): {"content": c, "special": s, "normalized": False,
                                                                      "lstrip": False, "rstrip": False, "single_word": False}
                                      for c, s in added}
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)


# The tiny tokenizers tools/fixture_gguf.py stages for fixtures that carry none, by family:
# (Split regexes, added tokens, NFC normaliser, leading specials, tokenizer_config fields).
STAGED_TOKENIZERS = {
    "dots1": ([QWEN2_PATTERN], DOTS1_ADDED, True, 0, {"eos_token": "<|endofresponse|>", "pad_token": "<|endoftext|>"}),
    "qwen2": ([QWEN2_PATTERN], QWEN_ADDED, True, 0, {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
    "glm4": ([GLM4_PATTERN], GLM_ADDED, True, 0, {"eos_token": "<|user|>", "pad_token": "<|endoftext|>"}),
    "exaone-moe": ([EXAONE_MOE_PATTERN], EXAONE_ADDED, False, 0, {"bos_token": "[BOS]", "eos_token": "[|endofturn|]"}),
    "afmoe": (AFMOE_PATTERNS, QWEN_ADDED, False, 0, {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
    # Hunyuan-A13B's tiktoken vocabulary splits with Qwen2's regex and does not normalise.
    "hunyuan": ([QWEN2_PATTERN], HUNYUAN_ADDED, False, 0, {"bos_token": "<|startoftext|>", "eos_token": "<|eos|>"}),
}


def write_staged_tokenizer(directory: str, family: str, vocab_size: int, template: str | None):
    """A tiny byte-level BPE with `family`'s pre-tokenizer and added tokens (STAGED_TOKENIZERS)
    plus tokenizer_config.json (with `template` as chat template when given), for a model
    fixture that carries no tokenizer and is converted to GGUF."""
    patterns, added, nfc, leading, fields = STAGED_TOKENIZERS[family]
    tokenizer = train(patterns, vocab_size - len(added) + leading, added, training_corpus(), nfc=nfc,
                      leading_specials=leading)
    assert tokenizer.get_vocab_size() <= vocab_size, "tokenizer larger than the model's vocabulary"
    tokenizer.save(os.path.join(directory, "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **fields, "model_max_length": 256,
              "clean_up_tokenization_spaces": False}
    if template is not None:
        config["chat_template"] = template
    write_tokenizer_config(directory, tokenizer, added, config)
    return tokenizer


# ERNIE-4.5's special tokens, declared in tokenizer_config.json's added_tokens_decoder.
ERNIE_ADDED = [("<|begin_of_sentence|>", True), ("<|end_of_sentence|>", True), ("<think>", False), ("</think>", False)]


def write_sentencepiece_tokenizer(directory: str, vocab_size: int, added: list[tuple[str, bool]], fields: dict):
    """A tiny SentencePiece BPE model (tokenizer.model: byte fallback, <unk>/<s>/</s> at 0/1/2,
    trained by the `sentencepiece` library on training_corpus()) and tokenizer_config.json
    declaring `added` after its pieces, for a fixture converted to GGUF as a `llama`
    vocabulary (ERNIE-4.5). Returns the processor."""
    import sentencepiece
    model = io.BytesIO()
    pieces = vocab_size - len(added)
    lines = [line for text in training_corpus() for line in text.splitlines() if line.strip()]
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=pieces, model_type="bpe", byte_fallback=True,
        character_coverage=0.9995, num_threads=1, split_digits=True, allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False, hard_vocab_limit=True, minloglevel=2)
    with open(os.path.join(directory, "tokenizer.model"), "wb") as f:
        f.write(model.getvalue())
    processor = sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **fields, "model_max_length": 256, "add_bos_token": False,
              "add_eos_token": False, "clean_up_tokenization_spaces": False}
    config["added_tokens_decoder"] = {str(pieces + i): {"content": c, "special": sp, "normalized": False, "lstrip": False,
                                                        "rstrip": False, "single_word": False}
                                      for i, (c, sp) in enumerate(added)}
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
    return processor


def write_deepseek_tokenizer(directory: str, family: str, vocab_size: int, template: str):
    """A tiny tokenizer with DeepSeek-V3's pipeline (no normaliser, its three Split regexes,
    ByteLevel) and the family's added tokens (`deepseek`: DeepSeek-V3's, BOS/EOS at 0/1;
    `kimi`: Kimi-K2's), plus tokenizer_config.json with the family's real chat template.
    The DeepSeek-family model fixtures carry no tokenizer; tools/fixture_gguf.py stages one
    with this for llama.cpp's converter, which needs one."""
    added = {"deepseek": DEEPSEEK_ADDED, "kimi": KIMI_ADDED, "kimi_vl": KIMI_VL_ADDED}[family]
    tokenizer = train(DEEPSEEK_V3_PATTERNS, vocab_size - len(added) + 2, added, training_corpus(), nfc=False,
                      leading_specials=2)
    assert tokenizer.get_vocab_size() <= vocab_size, "tokenizer larger than the model's vocabulary"
    tokenizer.save(os.path.join(directory, "tokenizer.json"))
    bos, eos = added[0][0], added[1][0]
    write_tokenizer_config(directory, tokenizer, added,
                           {"tokenizer_class": "PreTrainedTokenizerFast", "chat_template": template, "bos_token": bos,
                            "eos_token": eos, "add_bos_token": family == "deepseek", "add_eos_token": False,
                            "model_max_length": 256, "clean_up_tokenization_spaces": False})
    return tokenizer
