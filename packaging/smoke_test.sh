#!/usr/bin/env bash
# Smoke test of the packaged app: it starts headless, loads the default model and renders
# one edit (CLI), then opens the GUI offscreen, renders an edit there and quits; then it
# samples a tiny model of every supported family (SD, SDXL, SD3, Flux, PixArt, DiT, Z-Image ...).
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
# one tiny model of every family, built by the development environment's python, sampled by
# the package (a family whose libraries the bundle lacks fails here with its reason)
PY=${PY:-.venv/bin/python}
"$PY" packaging/tiny_families.py "$OUT/families" > "$OUT/families.txt"
while read -r family folder prompt; do
  args=(sample --model "$folder" --seed 0 --steps 2 --out "$OUT/$family.png")
  [ "$prompt" != "-" ] && args+=(--prompt "$prompt")
  "$APP" "${args[@]}" 2> "$OUT/$family.log" || { echo "family $family failed:"; cat "$OUT/$family.log"; exit 1; }
  test -s "$OUT/$family.png"
  echo "family $family: sampled"
done < "$OUT/families.txt"
echo "smoke test passed in $(( $(date +%s) - t0 )) s"
