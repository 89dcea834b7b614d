//! The harness the contracts' gas benchmarks share: it runs a contract's release wasm in
//! nearcore's wasmtime VM under the current protocol's costs (`PROTOCOL_VERSION`), on a mocked
//! account whose state persists from call to call, and adds the fees nearcore charges around
//! the code (receipt creation and execution), so a bench can price a whole transaction.
//!
//! A transaction's total is the signer's send fees plus, for every receipt it causes, the
//! receipt's execution fees and the gas its code burnt in the VM (which already includes the
//! send fees of the receipts that code creates). It is an estimate: the mocked trie charges no
//! trie-node touches; the sandbox tests on localnet measure the real `tx_outcome` totals.
//!
//! Gas is deterministic: it depends neither on the machine nor on this harness's build profile.
//! Benches print `BENCH <name> <value> <unit>` lines ([`print_bench`], [`print_gas`]).

mod contract;
mod vm;

pub use contract::{Call, Contract, Outcome};
pub use vm::Vm;

pub use near_parameters::{ActionCosts, ExtCosts};
pub use near_primitives_core::types::Gas;
pub use near_vm_runner::logic::types::PromiseResult;

use anyhow::{Context, Result};
use std::fmt::Display;
use std::path::PathBuf;

/// One second in nanoseconds (block timestamps are in nanoseconds).
pub const SEC: u64 = 1_000_000_000;
/// One NEAR in yoctoNEAR.
pub const NEAR: u128 = 10u128.pow(24);
/// The default block time of a call (2026-08-13 12:00 UTC, inside the validity of the
/// attestation vectors in contracts/attestation/testdata).
pub const T0: u64 = 1_786_622_400 * SEC;

/// Reads the wasm named by the command line's argument `index`, or by default
/// `$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/<name>.wasm` (`name` is the crate name
/// with underscores, as cargo writes the file).
pub fn wasm_arg(index: usize, name: &str) -> Result<Vec<u8>> {
    wasm_arg_release_file(
        index,
        &format!("{name}.wasm"),
        &format!(
            "cargo build -p {} --target wasm32-unknown-unknown --release",
            name.replace('_', "-")
        ),
    )
}

/// Reads the wasm named by the command line's argument `index`, or by default
/// `$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/<release_file>` (e.g.
/// `examples/gas_probe.wasm` for a crate's example); `build` is the command that writes the
/// default file, named in the error when it cannot be read.
pub fn wasm_arg_release_file(index: usize, release_file: &str, build: &str) -> Result<Vec<u8>> {
    let path = std::env::args()
        .nth(index)
        .map(PathBuf::from)
        .unwrap_or_else(|| default_wasm_path(release_file));
    std::fs::read(&path).with_context(|| format!("read {} ({build})", path.display()))
}

fn default_wasm_path(release_file: &str) -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    PathBuf::from(target)
        .join("wasm32-unknown-unknown/release")
        .join(release_file)
}

/// The sum of gas amounts (a bench's parts of one transaction).
pub fn sum(parts: &[Gas]) -> Gas {
    Gas::from_gas(parts.iter().map(|g| g.as_gas()).sum())
}

/// Gas in teragas, as the bench lines print it.
pub fn tgas(gas: Gas) -> f64 {
    gas.as_gas() as f64 / 1e12
}

/// Prints `BENCH <name> <value> <unit>`.
pub fn print_bench(name: &str, value: impl Display, unit: &str) {
    println!("BENCH {name} {value} {unit}");
}

/// Prints `BENCH <name>.gas <Tgas, 2 decimals> Tgas`.
pub fn print_gas(name: &str, gas: Gas) {
    print_bench(
        &format!("{name}.gas"),
        format_args!("{:.2}", tgas(gas)),
        "Tgas",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_and_tgas() {
        let total = sum(&[Gas::from_teragas(2), Gas::from_gas(500_000_000_000)]);
        assert_eq!(total.as_gas(), 2_500_000_000_000);
        assert!((tgas(total) - 2.5).abs() < 1e-12);
        assert_eq!(sum(&[]).as_gas(), 0);
    }

    #[test]
    fn default_wasm_path_names_the_release_file() {
        let path = default_wasm_path("model_token.wasm");
        assert!(
            path.ends_with("wasm32-unknown-unknown/release/model_token.wasm"),
            "{}",
            path.display()
        );
        let path = default_wasm_path("examples/gas_probe.wasm");
        assert!(
            path.ends_with("wasm32-unknown-unknown/release/examples/gas_probe.wasm"),
            "{}",
            path.display()
        );
    }

    #[test]
    fn a_missing_default_wasm_names_the_build_command() {
        // Argument 1000 is never given, so the default path is read; the file name is one no
        // build writes.
        let err = wasm_arg_release_file(1000, "examples/no_such_probe.wasm", "cargo build -p x")
            .expect_err("no such file");
        let msg = err.to_string();
        assert!(
            msg.contains("examples/no_such_probe.wasm") && msg.contains("(cargo build -p x)"),
            "{msg}"
        );
        let err = wasm_arg(1000, "no_such_crate").expect_err("no such file");
        assert!(
            err.to_string().contains(
                "no_such_crate.wasm (cargo build -p no-such-crate --target wasm32-unknown-unknown --release)"
            ),
            "{err}"
        );
    }
}
