#!/usr/bin/env python3
"""Runs the official `openai` Python client, unmodified, against a Jindou coordinator serving a
vision-language fixture: every image chat of the fixture's golden.json, its images sent as
base64 data: URLs in `image_url` parts, greedy, must return the text transformers generated
(`greedy_text`). Prints a JSON summary; exits 1 if a check fails.

    /tmp/venv/bin/python tools/openai_image_check.py http://127.0.0.1:8080 Tests/Fixtures/kimi-k25-tiny
"""
import base64
import json
import os
import sys

from openai import OpenAI


def as_openai(messages, fixture):
    """The golden's messages with {"type": "image", "image": path} parts as image_url data: URLs."""
    converted = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") == "image":
                    with open(os.path.join(fixture, part["image"]), "rb") as f:
                        kind = "jpeg" if part["image"].endswith(".jpg") else "png"
                        url = f"data:image/{kind};base64," + base64.b64encode(f.read()).decode()
                    parts.append({"type": "image_url", "image_url": {"url": url}})
                else:
                    parts.append(part)
            content = parts
        converted.append({**message, "content": content})
    return converted


def main():
    url, fixture = sys.argv[1], sys.argv[2]
    model = os.path.basename(os.path.normpath(fixture))
    client = OpenAI(base_url=url.rstrip("/") + "/v1", api_key="unused", max_retries=0)
    with open(os.path.join(fixture, "golden.json")) as f:
        golden = json.load(f)
    checks = {}
    for case in golden["cases"]:
        extra = {"ignore_eos": True}
        if case["experts_per_token"] is not None:
            extra["experts_per_token"] = case["experts_per_token"]
        chat = client.chat.completions.create(model=model, messages=as_openai(case["messages"], fixture),
                                              max_tokens=case["max_new_tokens"], temperature=0, extra_body=extra)
        checks[case["name"]] = {"ok": chat.choices[0].message.content == case["greedy_text"],
                                "images": len(case["images"]), "completion_tokens": chat.usage.completion_tokens}
    ok = all(c["ok"] and c["completion_tokens"] == case["max_new_tokens"]
             for c, case in zip(checks.values(), golden["cases"]))
    print(json.dumps({"ok": ok, "checks": checks}, indent=1))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
