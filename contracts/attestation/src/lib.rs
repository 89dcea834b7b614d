//! TEE attestation verification (Intel TDX DCAP, dstack event log, NVIDIA SPDM): skeleton.
