#!/usr/bin/env bash
# One-shot check of minids on a GPU machine (no network; CuPy, h5py, click, scipy,
# matplotlib, pytest and PyTorch preinstalled), run from the source tree:
#     bash scripts/device_check.sh OUT_DIR
# Runs the GPU tests, the gradient check on the GPU, a DS-NiN and a NiN training of
# 2 epochs on the embedded data set with a resume check (bit-identical on the same
# GPU), and the GPU benchmark. Each step's output goes to OUT_DIR/<step>.log; one
# line per step (exit status, seconds) and the key figures go to OUT_DIR/summary.txt.
# A failed step is recorded and the next one runs; the script exits non-zero if any failed.
set -uo pipefail
out=${1:?usage: bash scripts/device_check.sh OUT_DIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
# minids laid out as pip installs it (the top-level cli/ folder is the package minids.cli),
# without pip: the source tree alone has no minids.cli. `python -P` keeps the current
# folder (the source tree's minids) off sys.path.
site=$(mktemp -d)
cp -r minids "$site/minids" && cp -r cli "$site/minids/cli"
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
minids() { python -P -c "from minids.cli.main import main; main()" "$@"; }
summary="$out/summary.txt"
: > "$summary"
failed=0

step() {  # step NAME COMMAND...: run it, log it, record status and time
    local name=$1; shift
    local start=$SECONDS
    "$@" > "$out/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc, $((SECONDS - start)) s" | tee -a "$summary"
    [ "$rc" -eq 0 ] || failed=1
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python -c "import cupy; print('cupy', cupy.__version__, cupy.cuda.runtime.getDeviceCount(), 'device(s)')" 2>&1
} | tee -a "$summary"

step gpu_tests python -P -m pytest -q -m gpu tests
step gradcheck minids gradcheck --device gpu

train_args=(--device gpu --data fashion-mnist-mini --epochs 2 --quiet --force)
for model in ds-nin nin; do
    step "train_$model" minids train --model "$model" "${train_args[@]}" --out "$out/$model.h5"
    # the same run stopped after epoch 1, then resumed to 2: must equal the straight run
    step "resume_$model" bash -c "
        python -P -c 'from minids.cli.main import main; main()' train --model $model ${train_args[*]} --epochs 1 --out '$out/$model-split.h5' &&
        python -P -c 'from minids.cli.main import main; main()' train --resume '$out/$model-split.h5' --epochs 2 --device gpu --quiet &&
        python - '$out/$model.h5' '$out/$model-split.h5' <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], 'r') as a, h5py.File(sys.argv[2], 'r') as b:
    for name in a['layers']:
        for key in ('weight', 'bias'):
            x, y = a[f'layers/{name}/{key}'][()], b[f'layers/{name}/{key}'][()]
            assert np.array_equal(x, y), f'{name}.{key} differs by {np.abs(x - y).max()}'
    print('resume bit-identical; test accuracy', a.attrs['test_accuracy'])
PY"
    grep -h "done:\|bit-identical" "$out/train_$model.log" "$out/resume_$model.log" >> "$summary"
done

step benchmark python benchmarks/train_step.py --devices gpu --allocators default --repeats 3 \
    --frameworks minids,trainer,torch --json "$out/train_step_gpu.json"
tail -n 16 "$out/benchmark.log" >> "$summary"
# the same with TF32 (cuBLAS tensor cores) for minids, and PyTorch with TF32 as well
step benchmark_tf32 env CUPY_TF32=1 TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 python benchmarks/train_step.py \
    --devices gpu --allocators default --repeats 2 --frameworks minids,torch --json "$out/train_step_gpu_tf32.json"
tail -n 8 "$out/benchmark_tf32.log" >> "$summary"
exit $failed
