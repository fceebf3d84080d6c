#!/usr/bin/env python3
"""Runs the official `openai` Python client, unmodified, against a Jindou coordinator:
chat and text completions, streamed and not, model listing, the experts_per_token
extension, and error handling. Prints a JSON summary; exits 1 if a check fails.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install openai
    /tmp/venv/bin/python tools/openai_client_check.py http://127.0.0.1:8080 qwen3-moe-tiny [API_KEY]
"""
import json
import sys

import openai
from openai import OpenAI


def main():
    url, model = sys.argv[1], sys.argv[2]
    client = OpenAI(base_url=url.rstrip("/") + "/v1", api_key=sys.argv[3] if len(sys.argv) > 3 else "unused", max_retries=0)
    checks = {}
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a prime number."}]

    chat = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0, seed=7)
    streamed = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0, seed=7,
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
