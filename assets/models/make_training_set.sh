#!/usr/bin/env bash
# Rebuild the pairs mni-init.wsm was trained and validated on (see README.md).
# Needs Python with numpy, scipy and nibabel (`pip install numpy scipy nibabel`)
# and the shared data beside the repository. Usage: make_training_set.sh OUT_DIR
set -euo pipefail
out="${1:?usage: make_training_set.sh OUT_DIR}"
here="$(cd "$(dirname "$0")" && pwd)"
shared="${SHARED:-$here/../../../shared}"
S="$shared/data/sources"
B="$shared/bench/make_pair.py"
common=(--fixed "$S/mni_t1.nii.gz" --mask "$S/mni_mask.nii.gz" --labels "$S/mni_tissue.nii.gz"
        --voxel 2 --pad 5 --sigma 15 --noise 0.01)
# The first pair was made before the others, with the defaults' 200 landmarks.
python3 "$B" "${common[@]}" --max-disp 5 --seed 100 --out "$out/train/p100"
for s in $(seq 101 179); do
    disp=(3 4 5 6)
    extra=()
    # Every third pair: a bias field and a resection (the glioma case).
    # No affine: the affine stage runs before the network.
    if [ $((s % 3)) -eq 0 ]; then extra=(--bias 0.1 --resect-radius $((8 + s % 7))); fi
    python3 "$B" "${common[@]}" --n-landmarks 120 --max-disp "${disp[$((s % 4))]}" \
        "${extra[@]}" --seed "$s" --out "$out/train/p$s"
done
python3 "$B" "${common[@]}" --n-landmarks 120 --max-disp 5 --seed 200 --out "$out/val/v200"
python3 "$B" "${common[@]}" --n-landmarks 120 --max-disp 5 --seed 201 --out "$out/val/v201"
python3 "$B" "${common[@]}" --n-landmarks 120 --max-disp 5 --bias 0.1 --resect-radius 12 \
    --seed 202 --out "$out/val/v202"
