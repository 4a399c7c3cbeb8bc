"""A visual Turing test set: real reference slices and synthetic ones from the project's own diffusion model.

The synthetic images are SDEdit samples (Meng et al. 2022, "SDEdit: guided image synthesis and
editing with stochastic differential equations"): a real slice of the held-out test split is noised
to timestep ``level`` of the trained DDPM (``models/diffusion_mri_t1.pt``) and denoised back with
DDIM. At a low level the anatomy of the source survives and the image is hard to tell from a real
one; at a high level the model invents most of it and its failures show (smeared cortex, missing
structure). The levels are recorded per image in ``cases.csv``.

The model works on a 64 x 64 grid, so its images are upsampled to the 128 x 128 reference grid.
The real images are sent through the same 64 -> 128 round trip: otherwise sharpness alone would
tell them apart and the test would measure resolution, not realism.

Few real subjects exist offline (MNI152, Colin27, the ITK T1; see FIELD-NOTES), so the real and
synthetic images come from the same few brains: a study on this set is a demo of the protocol,
not a measurement of the generator.

    python -m workflows.cli make-turing-set --out data/turing --n 8 --seed 303

writes ``real-*.png`` / ``synthetic-*.png`` under ``images/`` (names carry no meaning to readers:
studies rename cases) and ``cases.csv`` (``image, truth, level, source``), a case list the Study
admin page and :func:`workflows.studies.read_case_list` read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from core.benchmark.seeds import TURING_SEED
from core.detectors.diffusion import DiffusionDetector, from_diffusion_grid, to_diffusion_grid
from core.profiles import DIFFUSION_WEIGHTS
from core.reference import load_split

DEFAULT_LEVELS = (150, 500)  # DDPM timesteps (of 1000) the synthetic images start from: near and far


def round_trip(images: np.ndarray, size: int) -> np.ndarray:
    """``(N, H, W)`` images in [0, 1] shrunk to ``size`` and back the way the diffusion model's output is."""
    x = torch.from_numpy(images[:, None].astype(np.float32))
    small = (to_diffusion_grid(x, size) + 1.0) / 2.0
    return from_diffusion_grid(small, images.shape[-1])[:, 0].clamp(0, 1).numpy()


def sdedit(detector, images: np.ndarray, level: int, seed: int) -> np.ndarray:
    """Synthetic versions of ``(N, H, W)`` real slices: noised to ``level`` and denoised with DDIM.

    Each image gets its own seeded noise (the detector's scoring noise is shared across a batch).
    """
    out = []
    for i, image in enumerate(images):
        generator = torch.Generator().manual_seed(seed * 1000 + i)
        x = torch.from_numpy(image[None, None].astype(np.float32))
        out.append(detector.reconstruct(x, level, sampler="ddim", generator=generator)[0, 0].numpy())
    return np.clip(np.stack(out), 0.0, 1.0)


def make_turing_set(reference_dir: Path, out_dir: Path, *, n: int = 8, seed: int = TURING_SEED,
                    levels: tuple[int, ...] = DEFAULT_LEVELS, split: str = "test",
                    diffusion_weights: Path | None = None) -> pd.DataFrame:
    """Write ``n`` real and ``n`` synthetic slices and ``cases.csv``; returns the table.

    Real and synthetic images come from different, seeded draws of the split's un-augmented
    slices; the synthetic ones cycle through ``levels``.
    """
    detector = DiffusionDetector.load(Path(diffusion_weights or DIFFUSION_WEIGHTS))
    data = load_split(Path(reference_dir), split)
    plain = np.flatnonzero(data.augmentation == 0) if (data.augmentation == 0).any() else np.arange(len(data.images))
    rng = np.random.default_rng(seed)
    if len(plain) < 2 * n:
        raise ValueError(f"the {split} split has {len(plain)} un-augmented slices; {2 * n} are needed")
    chosen = rng.choice(plain, size=2 * n, replace=False)
    real_idx, source_idx = chosen[:n], chosen[n:]
    size = detector.config.image_size
    real = round_trip(data.images[real_idx], size)
    synthetic, synthetic_levels, synthetic_sources = [], [], []
    for j, level in enumerate(levels):  # every len(levels)-th source slice starts from the same level
        group = source_idx[j::len(levels)]
        synthetic.append(sdedit(detector, data.images[group], level, seed + j))
        synthetic_levels += [level] * len(group)
        synthetic_sources += list(group)
    synthetic = np.concatenate(synthetic)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for kind, images, sources, image_levels in (("real", real, real_idx, [0] * n),
                                                 ("synthetic", synthetic, synthetic_sources, synthetic_levels)):
        for k, (image, source, level) in enumerate(zip(images, sources, image_levels, strict=True)):
            name = f"images/{kind}-{k:02d}.png"
            Image.fromarray(np.round(image * 255).astype(np.uint8)).save(out_dir / name)
            rows.append({"image": name, "truth": kind, "level": int(level),
                         "source": f"{data.subject[source]}:{int(data.slice_index[source])}"})
    table = pd.DataFrame(rows)
    table.to_csv(out_dir / "cases.csv", index=False)
    return table
