#!/usr/bin/env bash
# One command to see enclave-cloud run end to end on a local chain.
# Not yet: the end-to-end issue wires localnet, the contracts, the indexer and a worker here.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
    -h|--help)
        echo "usage: scripts/demo.sh [--keep]"
        echo "Runs localnet, deploys the contracts, starts the indexer and a worker, and runs a job."
        exit 0 ;;
esac

echo "enclave-cloud demo: not yet."
echo "Today you can build and check the contracts:"
echo "  ./scripts/build-contracts.sh"
echo "  ./scripts/test.sh"
