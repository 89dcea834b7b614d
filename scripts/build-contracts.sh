#!/usr/bin/env bash
# Builds every contract to $CARGO_TARGET_DIR/near/<name>.wasm (release, --cfg near),
# shrinks it with wasm-opt -Oz and prints its size.
# Usage: scripts/build-contracts.sh [crate...]   (default: every contract in contracts/)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_rust
command -v wasm-opt >/dev/null || apt_install binaryen || true

# A contract is a crate under contracts/ whose [lib] is a cdylib (examples and benches that
# are cdylibs do not count).
is_contract() {
    awk '/^\[/ { section = $0 } section == "[lib]" && /crate-type/ && /"cdylib"/ { found = 1 }
         END { exit !found }' "$1"
}
contracts=("$@")
if [[ ${#contracts[@]} -eq 0 ]]; then
    while IFS= read -r manifest; do
        if is_contract "$manifest"; then
            contracts+=("$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -1)")
        fi
    done < <(find "$REPO_ROOT/contracts" -name Cargo.toml -not -path '*/target/*' | sort)
fi
[[ ${#contracts[@]} -gt 0 ]] || fail "no contracts found under contracts/"

step "building ${#contracts[@]} contracts for wasm32: ${contracts[*]}"
pkg_args=()
for c in "${contracts[@]}"; do pkg_args+=(-p "$c"); done
(cd "$REPO_ROOT" && cargo build --locked --target wasm32-unknown-unknown --release "${pkg_args[@]}")

mkdir -p "$ECLOUD_WASM_DIR"
# wasm-opt 108 (Debian 12) does not read the target-features section: enable what rustc emits
# and nearcore's VM accepts. The deployability check in the tests re-validates the result.
WASM_OPT_FEATURES=(--enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int)
for c in "${contracts[@]}"; do
    name="${c//-/_}"
    src="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/$name.wasm"
    out="$ECLOUD_WASM_DIR/$name.wasm"
    # A new file, not an overwrite: a target dir copied with hard links must not change its twin.
    rm -f "$out"
    [[ -f "$src" ]] || fail "cargo did not produce $src"
    if command -v wasm-opt >/dev/null; then
        wasm-opt -Oz "${WASM_OPT_FEATURES[@]}" "$src" -o "$out" || fail "wasm-opt failed on $src"
    else
        cp "$src" "$out"
    fi
    printf '  %-20s %9d bytes  %s\n' "$name" "$(stat -c %s "$out")" "$out"
done
