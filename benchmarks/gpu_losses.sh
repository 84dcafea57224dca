#!/usr/bin/env bash
# The GPU rows of benchmarks/bench_losses.py in one command, for a machine whose
# Python has torch and scikit-learn but not POT or skorch (the device machines
# lent to this project). From the repository root, with the wheels in .whl/:
#
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 -d .whl \
#     POT==0.9.7.post1 skorch==1.4.0
#   bash benchmarks/gpu_losses.sh          # on the GPU machine (.whl carried)
#
# Writes doc/benchmarks/bench_losses_cuda.rst (batches 1024, 16384, 32768 with the
# issue's anchors; the large ones first, so that a run cut short by the device's
# time limit has the rows that matter in its log), a per-operation profile of
# one step at the first batch (benchmarks/profile_losses.py, in the log), and
# bench_losses_cuda_49152.rst
# (InfoNCE alone needs about 37 GiB there, 66 GiB at 65536, near an H100's 80),
# and copies them and the log to $OUT when it is set. DEVICE, BATCHES, BIG and REPEATS override the defaults
# (a CPU dry run: DEVICE=cpu BATCHES=256 BIG=512 REPEATS=2).
set -eo pipefail
DEVICE=${DEVICE:-cuda}
BATCHES=${BATCHES:-"16384 32768 1024"}
BIG=${BIG:-49152}
REPEATS=${REPEATS:-10}
PY=${PYTHON:-python3}
if ! "$PY" -c "import ot, skorch" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
log=${OUT:-/tmp}/bench_losses_${DEVICE}.log
{
    "$PY" -c "import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"
    # shellcheck disable=SC2086
    "$PY" benchmarks/bench_losses.py --device "$DEVICE" --batch $BATCHES --reg 0.05 \
        --repeats "$REPEATS" --losses infonce iot iot_total unbalanced dbot fgw ufgw ncu \
        pot_envelope20 unrolled20 --out "bench_losses_${DEVICE}.rst" \
        --title "Contrastive losses: one training step ($DEVICE)"
    # where a step's time goes, per operation (about 15 s on an H100)
    "$PY" benchmarks/profile_losses.py --device "$DEVICE" --batch "${BATCHES%% *}" \
        --losses infonce dbot fgw ufgw ncu
    "$PY" benchmarks/bench_losses.py --device "$DEVICE" --batch "$BIG" --reg 0.05 \
        --repeats "$REPEATS" --losses infonce iot unbalanced dbot fgw ufgw ncu \
        --out "bench_losses_${DEVICE}_${BIG}.rst" \
        --title "Contrastive losses at batch $BIG ($DEVICE)"
} 2>&1 | tee "$log"
if [ -n "$OUT" ]; then
    cp "doc/benchmarks/bench_losses_${DEVICE}.rst" "doc/benchmarks/bench_losses_${DEVICE}_${BIG}.rst" "$OUT/"
fi
