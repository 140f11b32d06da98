#!/usr/bin/env python3
"""Produce the facts-only extract of the Proxmox VE API schema.

Input: the official schema `apidoc.js` data of pve-docs (Proxmox VE API viewer), saved as JSON.
Output: `schema/pve-api.json`, keeping for every path and method only machine facts: parameter
names, types, optionality, patterns, enums, numeric bounds, formats named by id, and the shape of
the return value. No description prose is kept.

Usage: python3 schema/extract.py ../shared/pve-api-schema.json > schema/pve-api.json
"""
import json
import sys

KEEP = ("type", "optional", "pattern", "enum", "minimum", "maximum", "maxLength", "minLength")


def shape(s):
    """Strip a JSON-schema node down to its facts."""
    if not isinstance(s, dict):
        return None
    out = {}
    for k in KEEP:
        if k in s:
            out[k] = s[k]
    fmt = s.get("format")
    if isinstance(fmt, str):
        out["format"] = fmt
    elif isinstance(fmt, dict):
        # property-string formats: keep the key names and their types only
        out["format_keys"] = {
            k: {kk: v[kk] for kk in ("type", "enum", "optional", "pattern") if kk in v}
            for k, v in sorted(fmt.items())
            if isinstance(v, dict)
        }
    if "items" in s:
        out["items"] = shape(s["items"])
    if isinstance(s.get("properties"), dict):
        out["properties"] = {k: shape(v) for k, v in sorted(s["properties"].items())}
    if "additionalProperties" in s and not isinstance(s["additionalProperties"], dict):
        out["additionalProperties"] = s["additionalProperties"]
    return out


def walk(nodes, acc):
    for n in nodes:
        info = n.get("info") or {}
        for method, m in sorted(info.items()):
            params = (m.get("parameters") or {}).get("properties") or {}
            acc.append(
                {
                    "path": n["path"],
                    "method": method,
                    "protected": bool(m.get("protected")),
                    "params": {k: shape(v) for k, v in sorted(params.items())},
                    "returns": shape(m.get("returns") or {}),
                }
            )
        walk(n.get("children") or [], acc)


def main():
    with open(sys.argv[1]) as f:
        tree = json.load(f)
    acc = []
    walk(tree, acc)
    acc.sort(key=lambda e: (e["path"], e["method"]))
    doc = {
        "origin": "Proxmox VE API schema (pve-docs apidoc), facts-only extract made by schema/extract.py",
        "endpoints": acc,
    }
    json.dump(doc, sys.stdout, indent=0, sort_keys=True, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
