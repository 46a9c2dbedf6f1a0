#!/usr/bin/env bash
# Smoke test of the packaged app: it starts headless, loads the default model and renders
# one edit (CLI), then opens the GUI offscreen, renders an edit there and quits.
set -euo pipefail
APP=${1:-dist/hspace-studio/hspace-studio}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "package: $(du -sh "$(dirname "$APP")" | cut -f1) in $(dirname "$APP")"
t0=$(date +%s)
"$APP" sample --seed 7 --steps 10 --out "$OUT/s.png" --trajectory "$OUT/t.safetensors"
"$APP" pca --samples 16 --steps 10 --components 3 --out "$OUT/pcs.safetensors"
"$APP" edit --trajectory "$OUT/t.safetensors" --direction "$OUT/pcs.safetensors:0" --scale 2 --out "$OUT/e.png"
test -s "$OUT/e.png"
QT_QPA_PLATFORM=offscreen "$APP" gui --smoke-test "$OUT/gui.png"
test -s "$OUT/gui.png"
echo "smoke test passed in $(( $(date +%s) - t0 )) s"
