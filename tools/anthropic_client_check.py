#!/usr/bin/env python3
"""Runs the official `anthropic` Python client, unmodified, against a Jindou coordinator's
Messages API (`/v1/messages`, `/v1/messages/count_tokens`): text, thinking, tool_use with
tool_choice tool/any (inputs judged by jsonschema), tool_result round trips, stop sequences,
streaming events, token counting and errors. Prints a JSON summary; exits 1 if a check fails.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install anthropic openai jsonschema
    /tmp/venv/bin/python tools/anthropic_client_check.py http://127.0.0.1:8080 qwen3-moe-tiny [API_KEY]
"""
import json
import sys

import anthropic
import jsonschema
from openai import OpenAI


def main():
    url, model = sys.argv[1].rstrip("/"), sys.argv[2]
    key = sys.argv[3] if len(sys.argv) > 3 else "unused"
    client = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
    openai_client = OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    checks = {}
    system = "Be brief."
    messages = [{"role": "user", "content": "Name a prime number."}]
    off = {"type": "disabled"}

    # Text: the same answer as the OpenAI route gives for the same chat (greedy).
    reply = client.messages.create(model=model, max_tokens=12, system=system, messages=messages, extra_body={"temperature": 0}, thinking=off)
    reference = openai_client.chat.completions.create(
        model=model, max_tokens=12, temperature=0, messages=[{"role": "system", "content": system}] + messages,
        extra_body={"chat_template_kwargs": {"enable_thinking": False, "thinking": False}})
    text = "".join(b.text for b in reply.content if b.type == "text")
    checks["text_equals_openai_route"] = text == (reference.choices[0].message.content or "")
    checks["message_shape"] = (reply.type == "message" and reply.role == "assistant" and reply.id.startswith("msg_")
                               and reply.stop_reason in ("end_turn", "max_tokens") and reply.usage.output_tokens == 12
                               and reply.usage.input_tokens > 0)

    # Streaming events reassemble the same text; the final message equals the events.
    with client.messages.stream(model=model, max_tokens=12, system=system, messages=messages, extra_body={"temperature": 0}, thinking=off) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    streamed = "".join(b.text for b in final.content if b.type == "text")
    checks["stream_text"] = streamed == text and final.stop_reason == reply.stop_reason
    checks["stream_events"] = (kinds[0] == "message_start" and kinds[-1] == "message_stop" and "message_delta" in kinds
                               and ("content_block_start" in kinds) == bool(text))

    # Thinking on: the reasoning arrives as a thinking block, streamed as thinking deltas.
    thought = client.messages.create(model=model, max_tokens=12, messages=messages, extra_body={"temperature": 0},
                                     thinking={"type": "enabled", "budget_tokens": 1024})
    thinking = "".join(b.thinking for b in thought.content if b.type == "thinking")
    with client.messages.stream(model=model, max_tokens=12, messages=messages, extra_body={"temperature": 0},
                                thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
        streamed_thinking = "".join(e.delta.thinking for e in stream if e.type == "content_block_delta" and e.delta.type == "thinking_delta")
    checks["thinking_block"] = bool(thinking) and streamed_thinking == thinking

    # Tools: a forced tool and "any" give tool_use blocks whose input validates.
    weather = {"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo", "Lima"]}, "days": {"type": "integer"}},
               "required": ["city", "days"], "additionalProperties": False}
    clock = {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}}, "required": ["zone"], "additionalProperties": False}
    tools = [{"name": "get_weather", "description": "Weather of a city", "input_schema": weather},
             {"name": "get_time", "description": "The time", "input_schema": clock}]
    schemas = {"get_weather": weather, "get_time": clock}

    def valid(value, schema):
        try:
            jsonschema.validate(value, schema)
            return True
        except jsonschema.ValidationError:
            return False

    forced = client.messages.create(model=model, max_tokens=120, messages=messages, extra_body={"temperature": 0}, tools=tools,
                                    tool_choice={"type": "tool", "name": "get_weather"}, thinking=off)
    uses = [b for b in forced.content if b.type == "tool_use"]
    checks["forced_tool_use"] = (len(uses) == 1 and uses[0].name == "get_weather" and valid(uses[0].input, weather)
                                 and uses[0].id.startswith("toolu_"))
    with client.messages.stream(model=model, max_tokens=120, messages=messages, extra_body={"temperature": 0}, tools=tools,
                                tool_choice={"type": "tool", "name": "get_weather"}, thinking=off) as stream:
        partial = "".join(e.delta.partial_json for e in stream if e.type == "content_block_delta" and e.delta.type == "input_json_delta")
        streamed_use = [b for b in stream.get_final_message().content if b.type == "tool_use"]
    checks["forced_tool_use_stream"] = (uses != [] and json.loads(partial) == uses[0].input and len(streamed_use) == 1
                                        and streamed_use[0].input == uses[0].input)
    anyone = client.messages.create(model=model, max_tokens=200, messages=messages, extra_body={"temperature": 0.8}, tools=tools,
                                    tool_choice={"type": "any", "disable_parallel_tool_use": True}, thinking=off)
    any_uses = [b for b in anyone.content if b.type == "tool_use"]
    checks["any_tool_use"] = (anyone.stop_reason == "tool_use" and len(any_uses) == 1 and any_uses[0].name in schemas
                              and valid(any_uses[0].input, schemas[any_uses[0].name]))

    # A tool_result round trip renders through the template and answers.
    if uses:
        history = messages + [{"role": "assistant", "content": [{"type": "tool_use", "id": uses[0].id, "name": uses[0].name, "input": uses[0].input}]},
                              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "Sunny, 21 C"}]}]
        after = client.messages.create(model=model, max_tokens=4, messages=history, extra_body={"temperature": 0}, tools=tools, thinking=off)
        checks["tool_result_round_trip"] = after.usage.output_tokens == 4 and after.usage.input_tokens > forced.usage.input_tokens
        counted = client.messages.count_tokens(model=model, messages=history, tools=tools)
        checks["count_tokens"] = counted.input_tokens > 0
    else:
        checks["tool_result_round_trip"] = checks["count_tokens"] = False
    plain_count = client.messages.count_tokens(model=model, system=system, messages=messages)
    thought_again = client.messages.create(model=model, max_tokens=1, system=system, messages=messages, extra_body={"temperature": 0})
    checks["count_tokens_equals_usage"] = plain_count.input_tokens == thought_again.usage.input_tokens

    # Stop sequences: a piece of the greedy text stops it there.
    if len(text) > 4:
        stop = text[2:4]
        cut = client.messages.create(model=model, max_tokens=12, system=system, messages=messages, extra_body={"temperature": 0}, thinking=off,
                                     stop_sequences=[stop])
        cut_text = "".join(b.text for b in cut.content if b.type == "text")
        checks["stop_sequence"] = cut.stop_reason == "stop_sequence" and cut.stop_sequence == stop and text.startswith(cut_text) \
            and stop not in cut_text
    try:
        client.messages.create(model="no-such-model", max_tokens=4, messages=messages)
        checks["unknown_model_is_404"] = False
    except anthropic.NotFoundError:
        checks["unknown_model_is_404"] = True
    try:
        client.messages.create(model=model, max_tokens=4, messages=[{"role": "system", "content": "x"}])
        checks["bad_role_is_400"] = False
    except anthropic.BadRequestError as error:
        checks["bad_role_is_400"] = error.body.get("type") == "error" and "role" in error.body["error"]["message"]

    print(json.dumps({"checks": checks, "text": text, "anthropic_version": anthropic.__version__}))
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
