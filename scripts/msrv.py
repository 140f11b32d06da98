#!/usr/bin/env python3
"""MSRV check of the published crates' dependency graph.

Only one toolchain can be installed on our machines, so the MSRV is held in two halves:
clippy's `incompatible_msrv` lint (on by default, `-D warnings` in scripts/test.sh) refuses std
APIs newer than `rust-version`; this script refuses any crate that a published library pulls in
(normal and build dependencies, as resolved by Cargo.lock) whose own `rust-version` is newer.
"""
import json
import subprocess
import sys


def version_tuple(v):
    return tuple(int(p) for p in v.split(".")[:3]) + (0,) * (3 - len(v.split(".")[:3]))


def main():
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    members = [packages[i] for i in meta["workspace_members"]]
    published = [p for p in members if p.get("publish") is None or p["publish"]]
    if not published:
        sys.exit("msrv: no published workspace member found")
    msrv = {p["name"]: p.get("rust_version") for p in published}
    if None in msrv.values():
        sys.exit(f"msrv: a published crate has no rust-version: {msrv}")
    ours = min(msrv.values(), key=version_tuple)

    seen, stack = set(), [p["id"] for p in published]
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        for dep in nodes[pid]["deps"]:
            kinds = {k["kind"] for k in dep["dep_kinds"]}
            if kinds & {None, "build"}:
                stack.append(dep["pkg"])

    too_new = []
    for pid in sorted(seen):
        p = packages[pid]
        rv = p.get("rust_version")
        if rv and version_tuple(rv) > version_tuple(ours):
            too_new.append(f"{p['name']} {p['version']} needs Rust {rv}")
    if too_new:
        print(f"msrv: these dependencies need a newer Rust than our rust-version {ours}:")
        for line in too_new:
            print(f"  {line}")
        sys.exit(1)
    print(f"msrv: {len(seen)} crates in the published graph, none needs more than Rust {ours}")


if __name__ == "__main__":
    main()
