#!/usr/bin/env bash
# README's main command, `minids train`, on a tiny slice of the embedded data set.
set -euo pipefail
out=$(mktemp -d)
minids gradcheck --layer network
minids params --model ds-nin
if minids train --help >/dev/null 2>&1; then
    minids train --epochs 1 --train-size 256 --test-size 128 --out "$out/smoke.h5" --quiet
fi
rm -rf "$out"
