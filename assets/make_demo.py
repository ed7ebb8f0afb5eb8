"""Make the embedded demo pair in assets/demo/ from ../shared/data/pairs/brain2mm_resect.

Run from the repository root with nibabel, numpy and scipy installed:
    python assets/make_demo.py ../shared/data/pairs/brain2mm_resect assets/demo

What it does: crops both images to the head's bounding box (union of voxels
above 5 % of the maximum, plus a 2-voxel margin), resamples them onto a
2.5 mm isotropic RAS grid over that box (Gaussian anti-aliasing, trilinear),
and stores them as uint8 with scl_slope/scl_inter. The resection mask is
resampled with nearest neighbour. Landmarks are in world RAS mm and are
copied unchanged (they stay valid because the world coordinates do).
"""
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

SPACING = 2.5
src, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
fixed = nib.load(src / "fixed.nii.gz")
moving = nib.load(src / "moving.nii.gz")
f, m = fixed.get_fdata(dtype=np.float32), moving.get_fdata(dtype=np.float32)
head = (f > 0.05 * f.max()) | (m > 0.05 * m.max())
idx = np.argwhere(head)
lo = np.maximum(idx.min(0) - 2, 0)
hi = np.minimum(idx.max(0) + 2, np.array(f.shape) - 1)
aff = fixed.affine
# World box of the crop (voxel centres), then a 2.5 mm grid over it.
w_lo = aff[:3, :3] @ lo + aff[:3, 3]
w_hi = aff[:3, :3] @ hi + aff[:3, 3]
dims = np.floor((w_hi - w_lo) / SPACING).astype(int) + 1
new_aff = np.diag([SPACING, SPACING, SPACING, 1.0])
new_aff[:3, 3] = w_lo
# Target voxel -> source voxel coordinates.
src_vox = np.linalg.inv(aff) @ new_aff
grid = np.indices(dims).reshape(3, -1)
coords = src_vox[:3, :3] @ grid + src_vox[:3, 3:4]
spacing_src = np.sqrt((aff[:3, :3] ** 2).sum(0))
sigma = np.sqrt(np.maximum(SPACING**2 - spacing_src**2, 0)) / 2.355 / spacing_src


def resample(data, order, smooth):
    if smooth:
        data = ndimage.gaussian_filter(data, sigma)
    return ndimage.map_coordinates(data, coords, order=order, mode="constant").reshape(dims)


for name, img in [("fixed", fixed), ("moving", moving)]:
    data = resample(img.get_fdata(dtype=np.float32), 1, True)
    new = nib.Nifti1Image(data.astype(np.float32), new_aff)
    new.set_data_dtype(np.uint8)  # nibabel picks scl_slope/scl_inter to fit uint8
    new.header.set_sform(new_aff, code=1)
    new.header.set_qform(new_aff, code=1)
    nib.save(new, out / f"{name}.nii.gz")
res = resample(nib.load(src / "resection_fixed.nii.gz").get_fdata(dtype=np.float32), 0, False)
new = nib.Nifti1Image(res.astype(np.uint8), new_aff)
new.header.set_sform(new_aff, code=1)
new.header.set_qform(new_aff, code=1)
nib.save(new, out / "resection_fixed.nii.gz")
shutil.copy(src / "landmarks.csv", out / "landmarks.csv")
print("grid", dims, "spacing", SPACING, "origin", w_lo)
