#!/usr/bin/env python3
"""Runs the official `openai` Python client, unmodified, against a Jindou coordinator:
chat and text completions, streamed and not, logprobs, n, logit_bias and penalties, model
listing, the experts_per_token extension, and error handling. Prints a JSON summary; exits 1 if a check fails.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install openai jsonschema
    /tmp/venv/bin/python tools/openai_client_check.py http://127.0.0.1:8080 qwen3-moe-tiny [API_KEY]
"""
import json
import sys

import jsonschema
import openai
from openai import OpenAI


def main():
    url, model = sys.argv[1], sys.argv[2]
    client = OpenAI(base_url=url.rstrip("/") + "/v1", api_key=sys.argv[3] if len(sys.argv) > 3 else "unused", max_retries=0)
    checks = {}
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a prime number."}]
    # The bundled model's template (Qwen3's) thinks unless told not to, and the server splits
    # reasoning out of the answer; the checks of content switch thinking off.
    no_thinking = {"chat_template_kwargs": {"enable_thinking": False}}

    def create_chat(**kwargs):
        kwargs["extra_body"] = {**no_thinking, **kwargs.get("extra_body", {})}
        return client.chat.completions.create(model=model, messages=messages, **kwargs)

    chat = create_chat(max_tokens=8, temperature=0, seed=7)
    streamed = create_chat(max_tokens=8, temperature=0, seed=7,
                                              stream=True, stream_options={"include_usage": True})
    pieces, usage, finish = [], None, None
    for chunk in streamed:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    checks["chat_stream_equals_chat"] = "".join(pieces) == chat.choices[0].message.content
    checks["chat_usage"] = chat.usage.completion_tokens == 8 and usage is not None and usage.completion_tokens == 8
    checks["chat_finish"] = chat.choices[0].finish_reason == "length" and finish == "length"
    checks["chat_role"] = chat.choices[0].message.role == "assistant"

    completion = client.completions.create(model=model, prompt="Once upon a time", max_tokens=6, temperature=0)
    pieces = [c.choices[0].text for c in client.completions.create(model=model, prompt="Once upon a time", max_tokens=6,
                                                                   temperature=0, stream=True) if c.choices]
    checks["completion_stream_equals_completion"] = "".join(pieces) == completion.choices[0].text
    checks["completion_usage"] = completion.usage.completion_tokens == 6 and completion.usage.prompt_tokens > 0

    # logprobs / top_logprobs: one entry per token, the greedy token first among its top 3,
    # the bytes spelling the content; streamed entries equal the non-streamed ones.
    scored = create_chat(max_tokens=6, temperature=0,
                                            logprobs=True, top_logprobs=3)
    content = scored.choices[0].logprobs.content
    checks["chat_logprobs"] = (len(content) == 6 and all(len(e.top_logprobs) == 3 for e in content)
                               and all(e.top_logprobs[0].logprob == e.logprob and e.logprob <= 0 for e in content)
                               and b"".join(bytes(e.bytes) for e in content).decode("utf-8", "replace")
                               == scored.choices[0].message.content)
    streamed_entries = []
    for chunk in create_chat(max_tokens=6, temperature=0,
                                                logprobs=True, top_logprobs=3, stream=True):
        for choice in chunk.choices:
            if choice.logprobs and choice.logprobs.content:
                streamed_entries += [(e.token, e.logprob) for e in choice.logprobs.content]
    checks["chat_logprobs_stream"] = streamed_entries == [(e.token, e.logprob) for e in content]
    scored_text = client.completions.create(model=model, prompt="Once upon a time", max_tokens=4, temperature=0, logprobs=2)
    lp = scored_text.choices[0].logprobs
    checks["completion_logprobs"] = (len(lp.tokens) == 4 and len(lp.token_logprobs) == 4 and len(lp.text_offset) == 4
                                     and all(1 <= len(t) <= 2 for t in lp.top_logprobs))
    # n: choices with their index; greedy choices are equal; with a seed, choice 0 is the n=1 answer.
    two = create_chat(max_tokens=5, temperature=0, n=2)
    checks["n_greedy"] = ([c.index for c in two.choices] == [0, 1] and two.choices[0].message.content
                          == two.choices[1].message.content and two.usage.completion_tokens == 10)
    one = create_chat(max_tokens=5, temperature=1, seed=11)
    sampled = create_chat(max_tokens=5, temperature=1, seed=11, n=3)
    checks["n_seeded"] = len(sampled.choices) == 3 and sampled.choices[0].message.content == one.choices[0].message.content
    texts = {}
    for chunk in create_chat(max_tokens=5, temperature=1, seed=11, n=3,
                                                stream=True):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    checks["n_stream"] = [texts.get(i) for i in range(3)] == [c.message.content for c in sampled.choices]
    # logit_bias +100 on one token: greedy output is that token only; penalties are accepted.
    forced = client.completions.create(model=model, prompt="Once upon a time", max_tokens=3, temperature=0, logprobs=0,
                                       logit_bias={"42": 100})
    checks["logit_bias"] = len(set(forced.choices[0].logprobs.tokens)) == 1
    penalised = create_chat(max_tokens=4, temperature=0,
                                               presence_penalty=1.5, frequency_penalty=1.0,
                                               extra_body={"repetition_penalty": 1.3, "min_p": 0.05})
    checks["penalties_accepted"] = penalised.usage.completion_tokens == 4
    # Reasoning: with thinking on, the answer is reasoning until </think>; it equals the raw
    # text the same prompt gives as a plain completion (token ids from /tokenize).
    thinking = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0)
    import urllib.request
    request = urllib.request.Request(url.rstrip("/") + "/tokenize", data=json.dumps({"messages": messages}).encode(),
                                     headers={"Content-Type": "application/json"})
    prompt_ids = json.loads(urllib.request.urlopen(request).read())["tokens"]
    raw = client.completions.create(model=model, prompt=prompt_ids, max_tokens=8, temperature=0).choices[0].text
    message = thinking.choices[0].message
    reasoning = getattr(message, "reasoning_content", None)
    expected_reasoning, _, expected_content = raw.partition("</think>")
    checks["reasoning_split"] = (reasoning == (expected_reasoning or None) and getattr(message, "reasoning", None) == reasoning
                                 and message.content == (expected_content or None))
    streamed_reasoning, streamed_content = "", ""
    for chunk in client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0, stream=True):
        for choice in chunk.choices:
            streamed_reasoning += getattr(choice.delta, "reasoning_content", None) or ""
            streamed_content += choice.delta.content or ""
    checks["reasoning_stream"] = streamed_reasoning == (reasoning or "") and streamed_content == (message.content or "")
    hidden = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0,
                                            extra_body={"include_reasoning": False})
    checks["include_reasoning_false"] = getattr(hidden.choices[0].message, "reasoning_content", None) is None
    # Structured outputs on random weights: a forced call's arguments, the calls of
    # tool_choice "required" and response_format content validate against their schemas
    # (jsonschema is the judge); streamed answers equal the non-streamed ones.
    weather = {"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo", "Lima"]}, "days": {"type": "integer"},
                                                 "metric": {"type": "boolean"}},
               "required": ["city", "days"], "additionalProperties": False}
    clock = {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}}, "required": ["zone"], "additionalProperties": False}
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city", "parameters": weather}},
             {"type": "function", "function": {"name": "get_time", "description": "The time", "parameters": clock}}]
    schemas = {"get_weather": weather, "get_time": clock}

    def valid(value, schema):
        try:
            jsonschema.validate(value, schema)
            return True
        except jsonschema.ValidationError:
            return False

    def streamed_calls(**kwargs):
        calls, finish = {}, None
        for chunk in create_chat(stream=True, **kwargs):
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for delta in choice.delta.tool_calls or []:
                    call = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
                    if delta.id:
                        call["id"] = call["id"] or delta.id
                    if delta.function and delta.function.name:
                        call["name"] = delta.function.name
                    if delta.function and delta.function.arguments:
                        call["arguments"] += delta.function.arguments
        return [calls[i] for i in sorted(calls)], finish

    forced = {"type": "function", "function": {"name": "get_weather"}}
    named = create_chat(max_tokens=120, temperature=0, tools=tools, tool_choice=forced)
    message = named.choices[0].message
    call = message.tool_calls[0] if message.tool_calls else None
    checks["named_tool_call"] = (call is not None and call.type == "function" and call.function.name == "get_weather"
                                 and valid(json.loads(call.function.arguments), weather) and message.content is None
                                 and named.choices[0].finish_reason == "stop")
    stream_named, _ = streamed_calls(max_tokens=120, temperature=0, tools=tools, tool_choice=forced)
    checks["named_tool_call_stream"] = (call is not None and len(stream_named) == 1 and stream_named[0]["id"] is not None
                                        and stream_named[0]["name"] == "get_weather"
                                        and stream_named[0]["arguments"] == call.function.arguments)
    # Without parallel calls the list holds one call, so random weights finish it.
    required = create_chat(max_tokens=200, temperature=0.8, seed=5, tools=tools, tool_choice="required", parallel_tool_calls=False)
    calls = required.choices[0].message.tool_calls or []
    checks["required_tool_calls"] = (len(calls) == 1 and required.choices[0].finish_reason == "tool_calls"
                                     and all(c.function.name in schemas and valid(json.loads(c.function.arguments), schemas[c.function.name])
                                             for c in calls) and len({c.id for c in calls}) == len(calls))
    stream_required, finish = streamed_calls(max_tokens=200, temperature=0.8, seed=5, tools=tools, tool_choice="required",
                                             parallel_tool_calls=False)
    checks["required_tool_calls_stream"] = (finish == "tool_calls" and [(c["name"], c["arguments"]) for c in stream_required]
                                            == [(c.function.name, c.function.arguments) for c in calls])
    answer_schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "level": {"enum": ["low", "high"]},
                                                      "scores": {"type": "array", "items": {"type": "integer"}, "maxItems": 3}},
                     "required": ["ok", "level", "scores"], "additionalProperties": False}
    structured = create_chat(max_tokens=150, temperature=0, response_format={
        "type": "json_schema", "json_schema": {"name": "answer", "schema": answer_schema, "strict": True}})
    content = structured.choices[0].message.content
    checks["response_format_json_schema"] = structured.choices[0].finish_reason == "stop" and valid(json.loads(content), answer_schema)
    as_object = create_chat(max_tokens=150, temperature=0, response_format={"type": "json_object"},
                            extra_body={"guided_json": {"type": "object", "properties": {"a": {"type": "boolean"}},
                                                        "required": ["a"], "additionalProperties": False}})
    checks["guided_json"] = json.loads(as_object.choices[0].message.content).keys() == {"a"}
    try:
        create_chat(max_tokens=2, response_format={"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "string", "pattern": "^a+$"}}})
        checks["unsupported_schema_is_400"] = False
    except openai.BadRequestError as error:
        checks["unsupported_schema_is_400"] = "pattern" in str(error)
    # Prefix caching: the same long prompt again reports cached prompt tokens and the same text.
    document = [{"role": "user", "content": "Summarise: " + " ".join(f"item{i}" for i in range(60))}]
    cold = client.chat.completions.create(model=model, messages=document, max_tokens=6, temperature=0,
                                          extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    warm = client.chat.completions.create(model=model, messages=document, max_tokens=6, temperature=0,
                                          extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    cached = warm.usage.prompt_tokens_details.cached_tokens if warm.usage.prompt_tokens_details else 0
    checks["prefix_cache_hit"] = (cached > 0 and cached < warm.usage.prompt_tokens
                                  and warm.choices[0].message.content == cold.choices[0].message.content)
    models = client.models.list()
    checks["models"] = [m.id for m in models.data] == [model]

    fewer = client.completions.create(model=model, prompt="Once upon a time", max_tokens=6, temperature=0,
                                      extra_body={"experts_per_token": 1})
    checks["experts_per_token_accepted"] = fewer.usage.completion_tokens == 6

    try:
        client.completions.create(model="no-such-model", prompt="x", max_tokens=1)
        checks["unknown_model_is_404"] = False
    except openai.NotFoundError:
        checks["unknown_model_is_404"] = True
    try:
        client.completions.create(model=model, prompt="x", max_tokens=1, temperature=9)
        checks["bad_parameter_is_400"] = False
    except openai.BadRequestError:
        checks["bad_parameter_is_400"] = True

    summary = {"checks": checks, "chat": chat.choices[0].message.content, "completion": completion.choices[0].text,
               "openai_version": openai.__version__}
    print(json.dumps(summary))
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
