"""Validates the coordinator's served /openapi.json with openapi-spec-validator (PyPI).

    python tools/openapi_check.py http://127.0.0.1:8080

Prints one JSON line: {"valid": true, "paths": N, "operations": M} or exits 1 with the error.
"""
import json
import sys
import urllib.request

from openapi_spec_validator import validate


def main() -> int:
    base = sys.argv[1].rstrip("/")
    with urllib.request.urlopen(base + "/openapi.json", timeout=30) as response:
        document = json.load(response)
    try:
        validate(document)
    except Exception as error:  # the validator's own error names the failing part
        print(json.dumps({"valid": False, "error": str(error)[:2000]}))
        return 1
    operations = sum(len(item) for item in document["paths"].values())
    print(json.dumps({"valid": True, "openapi": document["openapi"], "paths": len(document["paths"]), "operations": operations}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
