//! How every enclave-cloud contract raises its typed errors.
//!
//! Each contract has one `thiserror` enum deriving [`near_sdk::FunctionError`]. Its code
//! returns `Result<T, ThatError>`; the public method (an `impl Trait for Contract` of the
//! contract's interface) ends with [`OrPanic::or_panic`], which fails the call with the
//! error's message. One way everywhere, including the methods whose signature a standard
//! (NEP-141, NEP-145) fixes.

use near_sdk::FunctionError;

/// Unwraps a contract result, failing the call with the error's message.
pub trait OrPanic<T> {
    fn or_panic(self) -> T;
}

impl<T, E: FunctionError> OrPanic<T> for Result<T, E> {
    fn or_panic(self) -> T {
        self.unwrap_or_else(|e| e.panic())
    }
}
