#!/usr/bin/env python3
"""JSON-schema fixtures for constrained decoding, labelled by the `jsonschema` package.

For each schema (the features Jindou's structured outputs enforce: types and type lists,
enum, const, properties/required/additionalProperties, items with minItems/maxItems,
string length bounds, $defs/$ref including recursion, anyOf/oneOf, nullable), a pool of
candidate instances (a few written below, many more mutated from them at random) is
labelled valid or invalid by `jsonschema.Draft202012Validator` — the oracle — and written
as JSON text the way Jindou's grammar spells values: compact (`{"a":1}`) and with one space
after `:` and `,` (`{"a": 1}`). `JSONSchemaGrammarTests` checks that the matcher accepts
exactly the valid texts (and every prefix of them), and rejects the invalid ones.

    pip install jsonschema
    python tools/fixture_schemas.py      # writes Tests/Fixtures/schemas/schemas.json
"""
import copy
import importlib.metadata
import json
import os
import random

import jsonschema

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "Fixtures", "schemas", "schemas.json")

SCHEMAS = {
    "weather_call": {"type": "object", "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 12},
        "days": {"type": "integer"},
        "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city"], "additionalProperties": False},
    "typed_values": {"type": "object", "properties": {
        "flag": {"type": "boolean"}, "ratio": {"type": "number"}, "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "maybe": {"type": ["integer", "null"]}, "kind": {"const": "fixed"}},
        "required": ["flag", "tags"], "additionalProperties": False},
    "open_object": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]},
    "typed_extras": {"type": "object", "additionalProperties": {"type": "number"}},
    "nested_defs": {"$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                                        "required": ["x", "y"], "additionalProperties": False}},
                    "type": "object", "properties": {"points": {"type": "array", "items": {"$ref": "#/$defs/point"}, "maxItems": 4},
                                                     "origin": {"$ref": "#/$defs/point"}},
                    "required": ["points"], "additionalProperties": False},
    "recursive_tree": {"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                                          "required": ["v"], "additionalProperties": False}},
                       "$ref": "#/$defs/node"},
    "any_of": {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "integer"},
                         {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"], "additionalProperties": False}]},
    "one_of_objects": {"oneOf": [{"type": "object", "properties": {"kind": {"const": "a"}, "n": {"type": "integer"}}, "required": ["kind", "n"], "additionalProperties": False},
                                 {"type": "object", "properties": {"kind": {"const": "b"}, "s": {"type": "string"}}, "required": ["kind", "s"], "additionalProperties": False}]},
    "array_bounds": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 3},
    "top_level_number": {"type": "number"},
    "enum_mixed": {"enum": ["x", 1, None, True, {"k": [1, 2]}]},
    "unicode_strings": {"type": "object", "properties": {"s": {"type": "string", "maxLength": 4}}, "required": ["s"], "additionalProperties": False},
}

SEEDS = {
    "weather_call": [{"city": "Paris"}, {"city": "Paris", "days": 3}, {"unit": "celsius", "city": "Oslo"}, {"city": ""},
                     {"city": "Paris", "extra": 1}, {"days": 3}, {"city": "Paris", "unit": "kelvin"}, {"city": "Paris", "days": 2.5},
                     {"city": "a very long city name"}],
    "typed_values": [{"flag": True, "tags": ["a"]}, {"flag": False, "ratio": -1.5e-3, "tags": ["a", "b", "c"], "maybe": None, "kind": "fixed"},
                     {"flag": 1, "tags": ["a"]}, {"flag": True, "tags": []}, {"flag": True, "tags": ["a", "b", "c", "d"]},
                     {"flag": True, "tags": ["a"], "maybe": 3}, {"flag": True, "tags": ["a"], "kind": "other"}],
    "open_object": [{"id": 1}, {"id": 1, "x": [1, {"y": None}], "z": "w"}, {"x": 1}, {"id": "1"}],
    "typed_extras": [{}, {"a": 1, "b": 2.5}, {"a": "1"}],
    "nested_defs": [{"points": []}, {"points": [{"x": 1, "y": 2}], "origin": {"x": 0, "y": 0}}, {"points": [{"x": 1}]},
                    {"points": [{"x": 1, "y": 2}] * 5}, {"origin": {"x": 0, "y": 0}}],
    "recursive_tree": [{"v": 1}, {"v": 1, "kids": [{"v": 2, "kids": [{"v": 3}]}, {"v": 4}]}, {"v": 1, "kids": [{"w": 2}]}, {"kids": []}],
    "any_of": ["ab", "abcd", 12, -3, {"a": True}, {"a": 1}, None, 1.5],
    "one_of_objects": [{"kind": "a", "n": 1}, {"kind": "b", "s": "x"}, {"kind": "a", "s": "x"}, {"kind": "c"}],
    "array_bounds": [[1, 2], [1, 2, 3], [1], [1, 2, 3, 4], [1, "2"]],
    "top_level_number": [0, -12, 3.25, 1e-07, -0.5, "3", True],
    "enum_mixed": ["x", 1, None, True, {"k": [1, 2]}, "y", 2, False, {"k": [1]}],
    "unicode_strings": [{"s": "héé"}, {"s": "日本語"}, {"s": "日本語です!"}, {"s": "a\nb\"c"}, {"s": "emoji😀"}],
}


def mutate(value, rng):
    """A nearby instance: change, drop or add one thing somewhere inside."""
    value = copy.deepcopy(value)
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(sorted(value))
        choice = rng.random()
        if choice < 0.3:
            del value[key]
        elif choice < 0.6:
            value[key] = mutate(value[key], rng)
        else:
            value[rng.choice(["extra", key + "x", "v"])] = rng.choice([1, "s", None, [1]])
        return value
    if isinstance(value, list) and value and rng.random() < 0.7:
        i = rng.randrange(len(value))
        choice = rng.random()
        if choice < 0.3:
            value.pop(i)
        elif choice < 0.6:
            value[i] = mutate(value[i], rng)
        else:
            value.append(copy.deepcopy(value[i]))
        return value
    return rng.choice([0, 7, -2, 0.25, "", "abc", "ü", True, False, None, [], {}, [1, 2], {"a": True}])


def main():
    rng = random.Random(1234)
    records = []
    for name, schema in SCHEMAS.items():
        validator = jsonschema.Draft202012Validator(schema)
        pool = list(SEEDS[name])
        for _ in range(40):
            pool.append(mutate(rng.choice(SEEDS[name]), rng))
        seen, instances = set(), []
        for value in pool:
            for separators in ((",", ":"), (", ", ": ")):
                text = json.dumps(value, ensure_ascii=False, separators=separators)
                # JSON Schema counts 1.0 as an integer; Jindou's grammar writes integers without a fraction.
                if text in seen or ".0," in text or ".0}" in text or ".0]" in text or text.endswith(".0"):
                    continue
                seen.add(text)
                instances.append({"text": text, "valid": validator.is_valid(value)})
        records.append({"name": name, "schema": schema, "instances": instances})
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump({"jsonschema": importlib.metadata.version("jsonschema"), "schemas": records}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(OUT, sum(len(r["instances"]) for r in records), "instances",
          sum(i["valid"] for r in records for i in r["instances"]), "valid")


if __name__ == "__main__":
    main()
