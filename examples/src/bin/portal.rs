//! The client-area portal.
//!
//! The web portal is not built yet (see the `examples` issue); this binary says so instead of
//! failing, so the README's run command stays honest on a fresh machine.

fn main() {
    println!("the client-area portal is not built yet: run `./scripts/test.sh` to test the SDK crates");
}
