#!/usr/bin/env bash
# Set everything up, then run medscan's main job on the bundled sample study (samples/):
# list the series, convert the CT series to NIfTI and to a derived DICOM series, denoise it (a derived
# series with the model and its fidelity check recorded), and write PNG previews before and after.
# Everything goes to demo-output/, which is cleared first.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate

CT=samples/ct_abdomen_siemens
OUT=demo-output
rm -rf "$OUT"
mkdir -p "$OUT"

# step TITLE CMD...: show the command, then run it.
step() {
    printf '\n== %s\n$ %s\n' "$1" "${*:2}"
    "${@:2}"
}

step "Series in the sample study" medscan info samples/
printf '\n== The same as JSON\n$ medscan info samples/ --json > %s\n' "$OUT/info.json"
medscan info samples/ --json >"$OUT/info.json"
step "CT series to NIfTI" medscan convert "$CT" -o "$OUT/ct_abdomen.nii.gz"
step "CT series to a derived DICOM series" medscan convert "$CT" -o "$OUT/ct_abdomen_dicom"
step "PNG preview, soft-tissue window" \
    medscan png "$CT" -o "$OUT/ct_abdomen.png" --window 40 400
step "Clean: denoise the CT series (blind, shipped model, fidelity guard)" \
    medscan clean denoise "$CT" -o "$OUT/ct_abdomen_denoised"
step "PNG preview of the denoised series" \
    medscan png "$OUT/ct_abdomen_denoised" -o "$OUT/ct_abdomen_denoised.png" --window 40 400

printf '\n== Written to %s/\n' "$OUT"
find "$OUT" -maxdepth 1 -mindepth 1 | sort | while read -r path; do
    if [ -d "$path" ]; then
        printf '  %-32s %s files, %s\n' "$path/" "$(find "$path" -type f | wc -l)" "$(du -sh "$path" | cut -f1)"
    else
        printf '  %-32s %s\n' "$path" "$(du -h "$path" | cut -f1)"
    fi
done
