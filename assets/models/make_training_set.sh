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
        --voxel 2 --pad 5 --noise 0.01 --n-landmarks 120)
for s in $(seq 600 679); do
    # Smoothness σ 8, 10, 12 or 15 mm and largest displacement 4, 6, 8 or
    # 10 mm, in all 16 combinations over the seeds.
    sigma=(8 10 12 15)
    disp=(4 6 8 10)
    extra=()
    # Every third pair: a bias field and a resection (the glioma case).
    # No affine: the affine stage runs before the network.
    if [ $((s % 3)) -eq 0 ]; then extra=(--bias 0.1 --resect-radius $((8 + s % 7))); fi
    python3 "$B" "${common[@]}" --sigma "${sigma[$((s % 4))]}" --max-disp "${disp[$(((s / 4) % 4))]}" \
        "${extra[@]}" --seed "$s" --out "$out/train/p$s"
done
python3 "$B" "${common[@]}" --sigma 10 --max-disp 8 --seed 700 --out "$out/val/v700"
python3 "$B" "${common[@]}" --sigma 15 --max-disp 5 --seed 701 --out "$out/val/v701"
python3 "$B" "${common[@]}" --sigma 12 --max-disp 6 --bias 0.1 --resect-radius 12 \
    --seed 702 --out "$out/val/v702"
