#!/bin/sh
# Train the default DDPM on a CUDA GPU, continuing from the shipped weights, then print the
# model-quality table (Frechet distance in the classifier's features, 1000 images per set,
# eta 0, at 10 and 50 steps, next to the generator's noise floor) of both EMAs.
#
#   sh bench/train_ddpm_gpu.sh OUT [MINUTES] [more options of hspace_studio.training.ddpm]
#
# Writes OUT/model (EMA 0.999), OUT/model-slow (EMA 0.9995), OUT/train.log and
# OUT/quality-model*.json; the resumable run state goes to $CHECKPOINT (runs/ddpm-gpu).
# Run it again with the same OUT to continue. DEVICE, BATCH, LR, SAMPLES and PYTHON override
# the defaults (cuda, 256, 2e-4, 1000, python3); DEVICE=cpu with tiny figures checks the script.
# INIT= (empty) trains from scratch instead, e.g. a wider model:
#   INIT= sh bench/train_ddpm_gpu.sh OUT 8 --channels 64,128,192,256
set -eu
[ $# -ge 1 ] || { echo "usage: sh bench/train_ddpm_gpu.sh OUT [MINUTES] [training options]" >&2; exit 2; }
out=$1
minutes=${2:-6}
shift
[ $# -gt 0 ] && shift
py=${PYTHON:-python3}
dev=${DEVICE:-cuda}
ck=${CHECKPOINT:-runs/ddpm-gpu}
init=${INIT-resources/default-model}
workers=$(( $(nproc) - 1 ))
mkdir -p "$out"
PYTHONUNBUFFERED=1 "$py" -m hspace_studio.training.ddpm --out "$out/model" --checkpoint "$ck" \
    ${init:+--init "$init"} --device "$dev" --batch "${BATCH:-256}" --lr "${LR:-2e-4}" \
    --decay 0.9 --workers "$workers" --minutes "$minutes" --save-every 2 \
    --slow-ema 0.9995 --slow-ema-out "$out/model-slow" "$@" 2>&1 | tee -a "$out/train.log"
for m in model model-slow; do
    echo "== $out/$m"
    "$py" -m hspace_studio evaluate --model "$out/$m" --device "$dev" --sections quality \
        --samples "${SAMPLES:-1000}" --eta 0 --json "$out/quality-$m.json"
done
