# Developer shortcuts. `just --list` shows them.

# Run the portal on the embedded simulator (the README's first command).
portal:
    cargo run -p examples --bin portal

# The whole test suite, exactly as CI runs it (the README's second command).
test:
    ./scripts/test.sh

fmt:
    cargo fmt --all

clippy:
    cargo clippy --workspace --all-targets -- -D warnings

doc:
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

bench:
    cargo bench -p benches

# A short run of each fuzz target (needs `cargo install cargo-fuzz` and a nightly toolchain).
fuzz seconds="30":
    cd fuzz && for t in $(cargo fuzz list); do cargo fuzz run "$t" -- -max_total_time={{seconds}}; done
