#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
# Installs what the tests need when it is missing (Debian packages, when run as root or with sudo),
# then runs format, lint, docs and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have pdns_server || need_pkgs+=(pdns-server)
[ -f /usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql ] || need_pkgs+=(pdns-backend-sqlite3)
have sqlite3 || need_pkgs+=(sqlite3)
# The PostgreSQL stores are tested against a real server that the tests start on loopback.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_pkgs+=(postgresql)
# The portal's end-to-end test drives Debian's Chromium through chromedriver; noVNC comes from npm.
have chromium || need_pkgs+=(chromium)
have chromedriver || need_pkgs+=(chromium-driver)
have npm || need_pkgs+=(npm)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    echo "installing test dependencies: ${need_pkgs[*]}"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get update -qq
    # pdns-server and postgresql must not start as system services: the tests run their own.
    $sudo_cmd mkdir -p /usr/sbin
    printf '#!/bin/sh\nexit 101\n' | $sudo_cmd tee /usr/sbin/policy-rc.d >/dev/null
    $sudo_cmd chmod +x /usr/sbin/policy-rc.d
    $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
    $sudo_cmd rm -f /usr/sbin/policy-rc.d
fi

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE=1
# A one-off build gains nothing from incremental caches, which would double the target
# directory's size (CI ran out of disk with them).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
# The published crates: MSRV of their dependency graph, then each packaged and built from its
# .crate file alone (path dependencies resolved through a local registry overlay).
python3 scripts/msrv.py
cargo package --workspace --exclude examples --exclude benches --exclude pg-test --locked
echo "all tests passed"
