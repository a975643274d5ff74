#!/usr/bin/env bash
# Set everything up, then run medscan's main job on the bundled sample study (samples/):
# list the series, convert the CT series to NIfTI and to a derived DICOM series, denoise its low-dose version
# (a derived series with the model, the estimated noise before and after, and its fidelity check recorded),
# and write a before|after PNG in one window.
# Everything goes to demo-output/, which is cleared first.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate

CT=samples/ct_abdomen_siemens
LOW_DOSE=samples/ct_abdomen_siemens_low_dose  # the same CT at about a tenth of its dose (simulated)
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
step "Clean: denoise the low-dose CT series (noise estimated from the scan, shipped model, fidelity guard)" \
    medscan clean denoise "$LOW_DOSE" -o "$OUT/ct_low_dose_denoised"
step "Before | after, soft-tissue window" \
    medscan png "$LOW_DOSE" -o "$OUT/ct_low_dose_before_after.png" --window 40 400 \
    --beside "$OUT/ct_low_dose_denoised"

printf '\n== Written to %s/\n' "$OUT"
find "$OUT" -maxdepth 1 -mindepth 1 | sort | while read -r path; do
    if [ -d "$path" ]; then
        printf '  %-32s %s files, %s\n' "$path/" "$(find "$path" -type f | wc -l)" "$(du -sh "$path" | cut -f1)"
    else
        printf '  %-32s %s\n' "$path" "$(du -h "$path" | cut -f1)"
    fi
done
