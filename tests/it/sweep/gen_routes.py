#!/usr/bin/env python3
"""Writes routes.json, the route table the bad-input sweep (tests/it/sweep.rs)
sends its requests to, from the Client-Server API's OpenAPI definitions in the
matrix-spec repository (data/api/client-server/*.yaml).

The test reads the committed routes.json (include_str!), never the spec: CI
runs on a fresh clone without it. Regenerate after updating the spec checkout:

    python3 tests/it/sweep/gen_routes.py [path/to/matrix-spec] > /dev/null

(default spec path: the first of ../shared/matrix-spec and
../../shared/matrix-spec, relative to the repository root or worktree, that
exists; needs Python 3 and PyYAML). It rewrites
tests/it/sweep/routes.json next to itself; commit the result.

Per operation it records: the method, the full path template (the file's
`servers` basePath, e.g. /_matrix/client/v3 or /_matrix/media/v3, joined to
the path), the path parameters' names, the query parameters' names and JSON
types, and the request body: its content type and, when it is a JSON object
schema, its top-level properties with their JSON types. `$ref`s are resolved
relative to the file that holds them (into definitions/, ../../schemas,
../../event-schemas, and `#/...` pointers), and `allOf` is merged.

The spec writes two operations whose path another operation already has
with a trailing space (`/rooms/{roomId}/invite ` for third-party invites,
`/events ` for peeking); the space is dropped, so both appear under the real
path, each with its own body or query.
"""

import json
import os
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
SPEC_CANDIDATES = [REPO.parent / "shared" / "matrix-spec", REPO.parent.parent / "shared" / "matrix-spec"]
METHODS = ["get", "put", "post", "delete", "patch", "head", "options"]

_docs = {}


def load(path):
    """The YAML document at `path`, with every `$ref` in it made absolute
    (`/abs/file.yaml#/pointer`), so a node means the same wherever it ends up."""
    path = Path(os.path.normpath(path))
    if path not in _docs:
        with open(path, encoding="utf-8") as f:
            _docs[path] = absolute_refs(yaml.safe_load(f), path)
    return _docs[path]


def absolute_refs(node, file):
    if isinstance(node, dict):
        out = {k: absolute_refs(v, file) for k, v in node.items()}
        if isinstance(out.get("$ref"), str):
            target, _, fragment = out["$ref"].partition("#")
            target = os.path.normpath(file.parent / target) if target else str(file)
            out["$ref"] = f"{target}#{fragment}"
        return out
    if isinstance(node, list):
        return [absolute_refs(v, file) for v in node]
    return node


def pointer(doc, fragment):
    node = doc
    for part in [p for p in fragment.split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def deref(node, seen=()):
    """Follows `$ref`s until a node without one."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if ref in seen:
            return {}
        seen = seen + (ref,)
        target, _, fragment = ref.partition("#")
        node = pointer(load(target), fragment)
    return node


def merged(schema, depth=0):
    """The schema with refs followed and `allOf` folded in."""
    schema = deref(schema)
    if not isinstance(schema, dict) or depth > 20:
        return {}
    if "allOf" not in schema:
        return schema
    out = {k: v for k, v in schema.items() if k != "allOf"}
    props = dict(out.get("properties", {}))
    for part in schema["allOf"]:
        for key, value in merged(part, depth + 1).items():
            if key == "properties":
                for name, prop in value.items():
                    props.setdefault(name, prop)
            elif key not in out:
                out[key] = value
    if props:
        out["properties"] = props
    return out


def json_types(schema, depth=0):
    """The JSON types a schema allows, sorted (empty: any, or not stated)."""
    schema = merged(schema)
    if not isinstance(schema, dict) or depth > 10:
        return []
    types = schema.get("type")
    if isinstance(types, str):
        types = [types]
    if types:
        return sorted(set(types))
    found = set()
    for key in ("oneOf", "anyOf"):
        for option in schema.get(key, []):
            found.update(json_types(option, depth + 1))
    if not found and "properties" in schema:
        found.add("object")
    return sorted(found)


def request_body(operation):
    body = operation.get("requestBody")
    if body is None:
        return None
    content = deref(body).get("content", {})
    if "application/json" not in content:
        return {"content_type": next(iter(content), "application/octet-stream"), "fields": None}
    schema = merged(content["application/json"].get("schema", {}))
    fields = None
    if "object" in json_types(schema) or "properties" in schema:
        fields = [
            {"name": name, "types": json_types(prop)}
            for name, prop in sorted(schema.get("properties", {}).items())
        ]
    return {"content_type": "application/json", "fields": fields}


def operations(spec_dir):
    api = spec_dir / "data" / "api" / "client-server"
    for file in sorted(api.glob("*.yaml")):
        doc = load(file)
        if not isinstance(doc, dict) or "paths" not in doc:
            continue
        base_path = doc["servers"][0]["variables"]["basePath"]["default"]
        for path, item in doc["paths"].items():
            item = deref(item)
            shared = item.get("parameters", [])
            for method in METHODS:
                if method not in item:
                    continue
                op = item[method]
                params = [deref(p) for p in shared + op.get("parameters", [])]
                yield {
                    "operation_id": op.get("operationId", ""),
                    "file": file.name,
                    "method": method.upper(),
                    "path": base_path + path.strip(),
                    "path_params": [p["name"] for p in params if p.get("in") == "path"],
                    "query": [
                        {"name": p["name"], "types": json_types(p.get("schema", {}))}
                        for p in params
                        if p.get("in") == "query"
                    ],
                    "body": request_body(op),
                }


def main():
    if len(sys.argv) > 1:
        spec_dir = Path(sys.argv[1])
    else:
        spec_dir = next((c for c in SPEC_CANDIDATES if c.is_dir()), SPEC_CANDIDATES[0])
    if not (spec_dir / "data" / "api" / "client-server").is_dir():
        sys.exit(f"no matrix-spec checkout at {spec_dir}: pass its path")
    routes = list(operations(spec_dir))
    out = HERE / "routes.json"
    with open(out, "w", encoding="utf-8") as f:
        json.dump(routes, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{len(routes)} operations -> {out}")


if __name__ == "__main__":
    main()
