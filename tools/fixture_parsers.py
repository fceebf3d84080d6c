#!/usr/bin/env python3
"""Tool-call and reasoning parser fixtures, written by vLLM's own parsers.

For every family Jindou serves, a corpus of model outputs in that family's published
tool-call format (vLLM's tests and the chat templates spell the formats) is run through
vLLM 0.33.0's parser for the family, composed exactly as `vllm serve --tool-call-parser X
--reasoning-parser Y --enable-auto-tool-choice` composes it (ParserManager.get_parser),
both ways vLLM runs it:

- complete: `parser.parse(text, request)` (the non-streaming chat completion), and
- streamed: `parser.parse_delta(...)` once per token of the text (the streaming chat
  completion), the deltas reassembled into reasoning, content and tool calls.

The result is `Tests/Fixtures/parsers/{family}.json`; `OutputParserTests` runs Jindou's
parsers over the same texts, whole and cut at every byte, and compares. No Python is
needed by the tests.

vLLM is not installed: its sdist's source tree is put on sys.path (its parsers are pure
Python). Usage:

    curl -sSL -o /tmp/vllm/vllm-0.33.0.tar.gz https://files.pythonhosted.org/packages/f7/25/aa5684e9c59d6fc75f78926b7f15e8d9adc7de2d9e6e7575b80776ad8169/vllm-0.33.0.tar.gz
    tar -C /tmp/vllm -xzf /tmp/vllm/vllm-0.33.0.tar.gz
    pip install --no-deps cbor2 pyzmq aiohttp multidict attrs yarl propcache aiosignal \
        frozenlist aiohappyeyeballs openai_harmony fastapi starlette opentelemetry-api \
        opentelemetry-sdk opentelemetry-semantic-conventions pybase64 cachetools \
        prometheus_client msgspec cloudpickle uvloop py-cpuinfo partial_json_parser regex \
        pydantic xgrammar apache-tvm-ffi
    python tools/fixture_parsers.py --vllm /tmp/vllm/vllm-0.33.0

gpt-oss's harmony format is read by llama.cpp's parser instead (vLLM's needs openai_harmony,
which downloads its vocabulary at load time):

    llama=$(tools/llama_cpp.sh --chat)
    python tools/fixture_parsers.py --llama-cpp $llama/build/bin/llama_cpp_chat_parse

The tokenizer handed to the parsers is a byte-level one holding each family's markers
as added special tokens (the released tokenizers are on the Hub, which is unreachable
here); the parsers look up only their markers' ids in it.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "Fixtures", "parsers")

# The request's tools: their JSON schemas drive the XML formats' value types.
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}, "days": {"type": "integer"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "set_options", "description": "Typed values",
        "parameters": {"type": "object", "properties": {
            "enabled": {"type": "boolean"}, "ratio": {"type": "number"},
            "count": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}},
            "options": {"type": "object"}, "note": {"type": "string"},
            "maybe": {"type": ["integer", "null"]}}}}},
    {"type": "function", "function": {
        "name": "list_files", "description": "No arguments",
        "parameters": {"type": "object", "properties": {}}}},
]


def json_call(name, arguments):
    return json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)


# Each family: vLLM's parser names (as its recipes pair them), the markers that are special
# tokens in the released tokenizer, and the corpus. A case is (id, text) or
# (id, text, chat_template_kwargs).
def hermes_cases():
    call = lambda n, a: "<tool_call>\n" + json_call(n, a) + "\n</tool_call>"
    w = call("get_weather", {"city": "Paris", "days": 3})
    return [
        ("plain", "The weather is fine."),
        ("reasoning_then_content", "Let me think.\nParis is in France.\n</think>\n\nIt is sunny in Paris."),
        ("reasoning_then_call", "The user wants weather.\n</think>\n\n" + w),
        ("content_then_call", "</think>I will check." + w),
        ("two_calls", "</think>" + w + "\n" + call("get_weather", {"city": "東京", "unit": "celsius"})),
        ("zero_arguments", "</think>" + call("list_files", {})),
        ("nested_arguments", "</think>" + call("set_options", {"options": {"a": [1, 2, {"b": None}]}, "tags": ["x", "y"], "enabled": True, "ratio": 0.5})),
        ("escaped_strings", "</think>" + call("set_options", {"note": "a \"quoted\" \\ line\nnext \u00e9"})),
        ("text_after_call", "</think>" + w + "\nDone."),
        ("truncated_call", "</think>" + "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par"),
        ("malformed_json", "</think><tool_call>\n{\"name\": \"get_weather\", \"arguments\": {city: Paris}}\n</tool_call>"),
        ("no_reasoning_close", "Still thinking about <tool_call> tags and more"),
        ("thinking_off", "Hello " + w, {"enable_thinking": False}),
        ("thinking_off_plain", "Just an answer.", {"enable_thinking": False}),
        ("marker_prefix_in_text", "</think>a < b and <tool is not a call"),
        ("think_open_in_output", "<think>\nreasoning here\n</think>\n\nanswer"),
    ]


def qwen3_coder_cases():
    def call(name, params):
        body = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in params)
        return f"<tool_call>\n<function={name}>\n{body}</function>\n</tool_call>"
    w = call("get_weather", [("city", "Paris"), ("days", "3")])
    return [
        ("plain", "The weather is fine."),
        ("reasoning_then_call", "Weather wanted.\n</think>\n\n" + w),
        ("content_then_call", "</think>I will check.\n" + w),
        ("typed_values", "</think>" + call("set_options", [("enabled", "true"), ("ratio", "0.25"), ("count", "7"), ("tags", '["a", "b"]'), ("options", '{"k": 1}'), ("note", "12"), ("maybe", "null")])),
        ("multiline_value", "</think>" + call("set_options", [("note", "line one\nline two\n  indented")])),
        ("two_calls", "</think>" + w + "\n" + call("get_weather", [("city", "Zürich"), ("unit", "celsius")])),
        ("zero_arguments", "</think>" + "<tool_call>\n<function=list_files>\n</function>\n</tool_call>"),
        ("unknown_parameter", "</think>" + call("get_weather", [("city", "Rome"), ("extra", "42")])),
        ("truncated_value", "</think><tool_call>\n<function=get_weather>\n<parameter=city>\nPar"),
        ("text_after_call", "</think>" + w + "\nDone."),
        ("function_without_tool_call", "</think><function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n</function>"),
        ("thinking_off", "Sure. " + w, {"enable_thinking": False}),
        ("bad_integer", "</think>" + call("get_weather", [("city", "Oslo"), ("days", "three")])),
    ]


def glm_cases():
    def call(name, params):
        return "<tool_call>" + name + "\n" + "".join(f"<arg_key>{k}</arg_key>\n<arg_value>{v}</arg_value>\n" for k, v in params) + "</tool_call>"
    w = call("get_weather", [("city", "Paris"), ("days", "3")])
    return [
        ("plain", "The weather is fine."),
        ("reasoning_then_content", "<think>Let me think.</think>It is sunny."),
        ("reasoning_then_call", "<think>Weather wanted.</think>" + w),
        ("content_then_call", "</think>I will check.\n" + w),
        ("typed_values", "</think>" + call("set_options", [("enabled", "true"), ("ratio", "0.25"), ("count", "7"), ("tags", '["a", "b"]'), ("options", '{"k": 1}'), ("note", "12")])),
        ("two_calls", "</think>" + w + call("get_weather", [("city", "北京"), ("unit", "celsius")])),
        ("zero_arguments", "</think><tool_call>list_files</tool_call>"),
        ("name_then_key_directly", "</think><tool_call>get_weather<arg_key>city</arg_key><arg_value>Rome</arg_value></tool_call>"),
        ("truncated_value", "</think><tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Par"),
        ("text_after_call", "</think>" + w + "Done."),
        ("no_think", "Direct answer " + w),
    ]


THINKING = {"thinking": True}


def with_thinking(cases):
    """DeepSeek's templates (and vLLM's deepseek_v3 reasoning parser) think only when asked."""
    return [case if len(case) > 2 else (*case, THINKING) for case in cases]


def deepseek_v31_cases():
    B, E = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
    cb, ce, sep = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
    call = lambda n, a: cb + n + sep + json.dumps(a, ensure_ascii=False) + ce
    return with_thinking([
        ("plain", "The weather is fine."),
        ("reasoning_then_content", "Let me think.</think>It is sunny."),
        ("one_call", "</think>I will check." + B + call("get_weather", {"city": "Paris", "days": 3}) + E),
        ("two_calls", "</think>" + B + call("get_weather", {"city": "Paris"}) + call("set_options", {"enabled": False, "tags": ["a"]}) + E),
        ("zero_arguments", "</think>" + B + call("list_files", {}) + E),
        ("unicode_arguments", "</think>" + B + call("get_weather", {"city": "東京"}) + E),
        ("truncated_call", "</think>" + B + cb + "get_weather" + sep + '{"city": "Pa'),
        ("text_after_calls", "</think>" + B + call("list_files", {}) + E + " trailing"),
        ("thinking_off", "Plain " + B + call("list_files", {}) + E, {"thinking": False}),
    ])


def deepseek_v32_cases():
    p = "｜DSML｜"
    def call(name, params):
        body = "".join(f'<{p}parameter name="{k}" string="{s}">{v}</{p}parameter>\n' for k, v, s in params)
        return f'<{p}invoke name="{name}">\n{body}</{p}invoke>\n'
    wrap = lambda *calls: f"\n\n<{p}function_calls>\n" + "".join(calls) + f"</{p}function_calls>"
    return with_thinking([
        ("plain", "The weather is fine."),
        ("reasoning_then_content", "Let me think.</think>It is sunny."),
        ("one_call", "</think>I will check." + wrap(call("get_weather", [("city", "Paris", "true"), ("days", "3", "false")]))),
        ("two_calls", "</think>" + wrap(call("get_weather", [("city", "Paris", "true")]), call("set_options", [("enabled", "true", "false"), ("tags", '["a", "b"]', "false"), ("note", "12", "true")]))),
        ("zero_arguments", "</think>" + wrap(call("list_files", []))),
        ("truncated_call", "</think>" + f'\n\n<{p}function_calls>\n<{p}invoke name="get_weather">\n<{p}parameter name="city" string="true">Par'),
        ("thinking_off", "Plain answer.", {"thinking": False}),
        ("thinking_off_call", "Sure." + wrap(call("list_files", [])), {"thinking": False}),
    ])


def kimi_cases():
    S, SE = "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"
    tb, te, ab = "<|tool_call_begin|>", "<|tool_call_end|>", "<|tool_call_argument_begin|>"
    call = lambda n, i, a: f"{tb}functions.{n}:{i}{ab}{json.dumps(a, ensure_ascii=False)}{te}"
    return [
        ("plain", "The weather is fine."),
        ("reasoning_then_content", "<think>Let me think.</think>It is sunny."),
        ("reasoning_then_call", "<think>Weather wanted.</think>" + S + call("get_weather", 0, {"city": "Paris"}) + SE),
        ("content_then_call", "</think>I will check. " + S + call("get_weather", 0, {"city": "Paris", "days": 2}) + SE),
        ("two_calls", "</think>" + S + call("get_weather", 0, {"city": "Paris"}) + call("get_weather", 1, {"city": "上海"}) + SE),
        ("zero_arguments", "</think>" + S + call("list_files", 0, {}) + SE),
        ("space_before_argument_marker", "</think>" + S + f"{tb}functions.get_weather:0 {ab}" + '{"city": "Rome"}' + te + SE),
        ("truncated_call", "</think>" + S + f"{tb}functions.get_weather:0{ab}" + '{"city": "Par'),
        ("call_inside_reasoning", "<think>I should call " + S + call("list_files", 0, {}) + SE),
        ("thinking_off", "Sure " + S + call("list_files", 0, {}) + SE, {"thinking": False}),
    ]


def minimax_cases():
    def call(name, params):
        body = "".join(f'<parameter name="{k}">{v}</parameter>\n' for k, v in params)
        return f'<invoke name="{name}">\n{body}</invoke>\n'
    wrap = lambda *calls: "<minimax:tool_call>\n" + "".join(calls) + "</minimax:tool_call>"
    return [
        ("plain", "The weather is fine."),
        ("reasoning_then_content", "<think>Let me think.</think>\n\nIt is sunny."),
        ("reasoning_then_call", "<think>Weather wanted.</think>\n\n" + wrap(call("get_weather", [("city", "Paris"), ("days", "3")]))),
        ("content_then_call", "</think>I will check.\n" + wrap(call("get_weather", [("city", "Seattle")]))),
        ("typed_values", "</think>" + wrap(call("set_options", [("enabled", "false"), ("ratio", "1.5"), ("count", "10"), ("tags", '["a"]'), ("options", '{"k": "v"}'), ("note", "7")]))),
        ("two_calls", "</think>" + wrap(call("get_weather", [("city", "Paris")]), call("get_weather", [("city", "Köln")]))),
        ("zero_arguments", "</think>" + wrap(call("list_files", []))),
        ("truncated_value", "</think><minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"city\">Par"),
    ]


# family: (tool parser, reasoning parser, special tokens, cases)
FAMILIES = {
    "qwen3": ("hermes", "qwen3", ["<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "</tool_call>"], hermes_cases),
    "qwen3_coder": ("qwen3_coder", "qwen3", ["<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "</tool_call>"], qwen3_coder_cases),
    "glm45": ("glm45", "glm45", ["<|user|>", "<|assistant|>", "<think>", "</think>", "<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>"], glm_cases),
    "deepseek_v31": ("deepseek_v31", "deepseek_v3", ["<think>", "</think>", "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"], deepseek_v31_cases),
    "deepseek_v32": ("deepseek_v32", "deepseek_v3", ["<think>", "</think>"], deepseek_v32_cases),
    "kimi_k2": ("kimi_k2", "kimi_k2", ["<think>", "</think>", "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", "<|tool_call_begin|>", "<|tool_call_end|>", "<|tool_call_argument_begin|>"], kimi_cases),
    "minimax_m2": ("minimax_m2", "minimax_m2", ["<think>", "</think>", "<minimax:tool_call>", "</minimax:tool_call>"], minimax_cases),
}


def byte_tokenizer(specials):
    """A byte-level BPE with no merges (one token per byte) and the family's markers."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast
    alphabet = ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.add_special_tokens({"additional_special_tokens": specials})
    return fast


def calls_of(tool_calls):
    return [{"name": c["name"], "arguments": c["arguments"]} for c in tool_calls]


def run_case(parser_cls, tokenizer, text, kwargs):
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    def request():
        return ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}], tools=TOOLS,
                                     tool_choice="auto", chat_template_kwargs=kwargs or None)
    def new_parser():
        req = request()
        tools = req.tools
        p = parser_cls(tokenizer, tools, chat_template_kwargs=kwargs or {}) if kwargs else parser_cls(tokenizer, tools)
        req = p.adjust_request(req)
        return p, req

    p, req = new_parser()
    ids = tokenizer.encode(text, add_special_tokens=False)
    reasoning, content, calls = p.parse(text, req, enable_auto_tools=True, model_output_token_ids=ids)
    complete = {"reasoning": reasoning, "content": content,
                "tool_calls": [{"name": c.name, "arguments": c.arguments} for c in (calls or [])]}

    p, req = new_parser()
    streamed = {"reasoning": "", "content": "", "tool_calls": []}
    previous = ""
    for i in range(len(ids)):
        current = tokenizer.decode(ids[: i + 1], skip_special_tokens=False)
        # As vLLM's incremental detokenizer: no text until a character's bytes are complete.
        delta_text = "" if current.endswith("\ufffd") else current[len(previous):]
        previous += delta_text
        delta = p.parse_delta(delta_text, [ids[i]], req, prompt_token_ids=None, finished=i == len(ids) - 1)
        if delta is None:
            continue
        if delta.reasoning:
            streamed["reasoning"] += delta.reasoning
        if delta.content:
            streamed["content"] += delta.content
        for tc in delta.tool_calls or []:
            while len(streamed["tool_calls"]) <= tc.index:
                streamed["tool_calls"].append({"name": "", "arguments": ""})
            slot = streamed["tool_calls"][tc.index]
            if tc.function is not None:
                if tc.function.name:
                    slot["name"] += tc.function.name
                if tc.function.arguments:
                    slot["arguments"] += tc.function.arguments
    assert previous == text, (previous, text)
    streamed = {k: (v if v != "" else None) if k != "tool_calls" else v for k, v in streamed.items()}
    return complete, streamed


# gpt-oss's harmony format, read by llama.cpp's parser (common/parsers/gpt-oss.cpp) through
# tools/llama_cpp_chat_parse.cpp: vLLM's harmony parser needs openai_harmony, which downloads
# its o200k vocabulary at load time (no internet here but PyPI). The texts follow the harmony
# spec and llama.cpp's tests/test-chat.cpp; each is what the model writes after the
# generation prompt `<|start|>assistant` (stop tokens <|return|> and <|call|> not included).
HARMONY_MARKERS = ["<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|constrain|>", "<|call|>", "<|return|>"]


def gpt_oss_cases():
    A = "<|channel|>analysis<|message|>"
    F = "<|end|><|start|>assistant<|channel|>final<|message|>"
    N = "<|end|><|start|>assistant"
    weather = json.dumps({"city": "Paris", "days": 3})
    return [
        ("final_only", "<|channel|>final<|message|>Hello, world!\nWhat's up?"),
        ("commentary_only", "<|channel|>commentary<|message|>Hello, world!\nWhat's up?", {"offer_tools": False}),
        ("analysis_then_final", A + "I'm\nthinking" + F + "Hello, world!\nWhat's up?"),
        ("analysis_truncated", A + "I'm\nthinking about"),
        ("analysis_closed_only", A + "done thinking" + N),
        ("two_analyses_then_final", A + "first" + N + A[:-len("<|message|>")] + "<|message|>second" + F + "answer"),
        ("call_recipient_in_role", " to=functions.get_weather<|channel|>commentary<|message|>" + weather),
        ("call_recipient_in_channel", "<|channel|>commentary to=functions.get_weather<|message|>" + weather),
        ("call_constrained", "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>" + weather),
        ("call_role_constrained", " to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>" + weather),
        ("call_in_analysis_channel", "<|channel|>analysis to=functions.get_weather<|message|>" + weather),
        ("reasoning_then_call", A + "The user wants weather." + N + "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>" + weather),
        ("reasoning_preamble_call", A + "Check the weather." + N + "<|channel|>commentary<|message|>Let me look that up." + N +
         " to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>" + weather),
        ("zero_arguments", A + "List them." + N + "<|channel|>commentary to=functions.list_files <|constrain|>json<|message|>{}"),
        ("nested_arguments", "<|channel|>commentary to=functions.set_options <|constrain|>json<|message|>" +
         json.dumps({"options": {"a": [1, 2, {"b": None}]}, "tags": ["x", "y"], "enabled": True, "ratio": 0.5})),
        ("unicode", A + "東京の天気 ☀️" + N + "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>" +
         json.dumps({"city": "東京", "unit": "celsius"}, ensure_ascii=False)),
        ("unicode_final", A + "naïve café" + F + "Ça va très bien — 謝謝 🙂"),
        ("escaped_strings", "<|channel|>commentary to=functions.set_options <|constrain|>json<|message|>" +
         json.dumps({"note": "say \"hi\"\n\ttab <|end|> inside", "tags": ["}", "{"]})),
        ("call_truncated", A + "Weather." + N + "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Par"),
        ("builtin_recipient_in_role", A + "I will execute python to say hello" + N + " to=container.exec<|channel|>commentary<|message|>python3 -c 'print(1)'"),
        ("builtin_recipient_in_channel", A + "Search the web." + N + "<|channel|>commentary to=browser.search <|constrain|>json<|message|>{\"query\": \"x\"}"),
        ("builtin_without_tools", A + "Run it." + N + "<|channel|>commentary to=python <|constrain|>code<|message|>print(\"hello\")", {"offer_tools": False}),
        ("stray_commentary", "<|channel|>commentary to=assistant<|channel|>analysis<|message|>hmm" + N + "<|channel|>commentary<|channel|>final<|message|>ok"),
        ("tools_offered_plain_answer", A + "No tool needed." + F + "It is 4."),
        ("tool_choice_none", A + "Just answer." + F + "Paris is sunny.", {"tool_choice": "none"}),
        ("tool_choice_required", A + "Must call." + N + "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>" + weather, {"tool_choice": "required"}),
        ("no_tools_final", A + "thinking" + F + "plain", {"offer_tools": False}),
        ("reasoning_off", A + "I'm\nthinking" + F + "Hello", {"reasoning_format": "none", "offer_tools": False}),
        ("marker_like_text", A + "a <| b |> c <|chan" + F + "x <|end and <|start"),
        ("empty_final", A + "nothing to say" + F),
        ("whitespace", A + "  spaced  \n" + F + "\n  answer  \n"),
        ("not_harmony", "Just plain text, no channel at all."),
        ("not_harmony_with_markers", "plain <|start|>text<|end|> here", {"offer_tools": False}),
    ]


LLAMA_CPP_FAMILIES = {
    # vLLM's names for gpt-oss's parsers: --tool-call-parser openai --reasoning-parser openai_gptoss
    "gpt_oss": ("openai", "openai_gptoss", HARMONY_MARKERS, "templates/gpt_oss.jinja", gpt_oss_cases),
}


def marker_tokens(text, markers):
    """Markers whole (they are special tokens), everything else one character at a time."""
    tokens, i = [], 0
    while i < len(text):
        m = next((m for m in markers if text.startswith(m, i)), None)
        tokens.append(m or text[i])
        i += len(m) if m else 1
    return tokens


def write_llama_cpp_family(family, harness):
    import subprocess
    tool_name, reasoning_name, markers, template, cases = LLAMA_CPP_FAMILIES[family]
    with open(os.path.join(HERE, "..", "Tests", "Fixtures", template), encoding="utf-8") as f:
        source = f.read()
    corpus = []
    for case in cases():
        options = case[2] if len(case) > 2 else {}
        corpus.append({"id": case[0], "tokens": marker_tokens(case[1], markers), **options})
    run = subprocess.run([harness], input=json.dumps({"template": source, "tools": TOOLS, "cases": corpus}),
                         capture_output=True, text=True, check=True)
    results = {r["id"]: r for r in json.loads(run.stdout)["cases"]}
    records = []
    for case in cases():
        options = case[2] if len(case) > 2 else {}
        r = results[case[0]]
        records.append({"id": case[0], "text": case[1], "chat_template_kwargs": {}, "options": options,
                        "complete": r["complete"], "streamed": r["streamed"]})
    doc = {"family": family, "oracle": "llama.cpp (llama-cpp-python 0.3.36's vendored common/chat.cpp)",
           "tool_call_parser": tool_name, "reasoning_parser": reasoning_name, "tools": TOOLS, "cases": records}
    path = os.path.join(OUT, f"{family}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{path}: {len(records)} cases (llama.cpp)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vllm", help="the extracted vllm-0.33.0 sdist (the families vLLM's parsers read)")
    ap.add_argument("--llama-cpp", help="llama_cpp_chat_parse from `tools/llama_cpp.sh --chat` (the harmony family)")
    ap.add_argument("--only", help="one family")
    args = ap.parse_args()
    if not args.vllm and not args.llama_cpp:
        ap.error("give --vllm, --llama-cpp or both")
    os.makedirs(OUT, exist_ok=True)
    if args.llama_cpp:
        for family in LLAMA_CPP_FAMILIES:
            if not args.only or family == args.only:
                write_llama_cpp_family(family, args.llama_cpp)
    if not args.vllm:
        return
    sys.path.insert(0, os.path.abspath(args.vllm))
    import logging
    logging.disable(logging.WARNING)
    from vllm.parser.parser_manager import ParserManager
    for family, (tool_name, reasoning_name, specials, cases) in FAMILIES.items():
        if args.only and family != args.only:
            continue
        tokenizer = byte_tokenizer(specials)
        parser_cls = ParserManager.get_parser(tool_parser_name=tool_name, reasoning_parser_name=reasoning_name,
                                              enable_auto_tools=True, tokenizer=tokenizer)
        records = []
        for case in cases():
            cid, text = case[0], case[1]
            kwargs = case[2] if len(case) > 2 else {}
            complete, streamed = run_case(parser_cls, tokenizer, text, kwargs)
            records.append({"id": cid, "text": text, "chat_template_kwargs": kwargs,
                            "complete": complete, "streamed": streamed})
        doc = {"family": family, "vllm": "0.33.0", "tool_call_parser": tool_name, "reasoning_parser": reasoning_name,
               "tools": TOOLS, "cases": records}
        path = os.path.join(OUT, f"{family}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(f"{path}: {len(records)} cases")


if __name__ == "__main__":
    main()
