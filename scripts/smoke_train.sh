#!/usr/bin/env bash
# README's main command, `minids train`, on a tiny slice of the embedded data set.
set -euo pipefail
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
minids gradcheck --layer network
minids params --model ds-nin
minids train --epochs 1 --train-size 256 --test-size 128 --out "$out/smoke.h5" --quiet
minids evaluate "$out/smoke.h5" --data fashion-mnist-mini --test-size 128
