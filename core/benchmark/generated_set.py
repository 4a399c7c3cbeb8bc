"""The demo's generated set: synthetic brain slices sampled from two trained generators, settings kept.

A screening tool has to be shown images that a real generative model made, good and bad, not only
simulated artifacts. This module samples them from two generators of different kinds, both trained
on SAFEGEN's real reference slices (brain MRI T1, ``data/reference``) on the CPU with fixed seeds:

* **DDPM** — a MONAI ``DiffusionModelUNet`` trained with the DDPM loss by
  ``python -m workflows.cli train generator`` (``models/generator_mri_t1.pt``). Same recipe as the
  detector's diffusion model, but seed 1: SAFEGEN never judges samples of its own weights. It works
  on a 64 x 64 grid. Three samplers, from pure noise:

  - ``ddpm-1000``: ancestral DDPM over all 1000 training timesteps (what the model was trained for);
  - ``ddim-50``: deterministic DDIM (eta 0) with 50 steps, a common speed-up;
  - ``ddim-10``: DDIM with 10 steps, too few for this model: the samples keep visible noise.

* **VAE** — the small convolutional VAE of the latent_ig explainer (``models/vae_mri_t1.pt``),
  decoded from latents drawn from a Gaussian fitted to the training slices' posterior means
  (ex-post density estimation, Ghosh et al. 2020, "From variational to deterministic autoencoders"):
  its N(0, I) prior decodes to blobs, not brains, because the posteriors sit far from it. Its
  failure mode is blur, where the DDPM's is noise and invented structure.

Two real controls go through the same file path: ``real-128`` (held-out test slices written as
8-bit PNG) and ``real-64`` (the same kind of slices shrunk to the DDPM's 64 px grid and back, as the
DDPM's samples are), so a flag caused by resolution alone shows up as a flagged control.

    python -m workflows.cli make-generated-set            # writes demo/generated_mri_t1 (212 s on 2 cores)

writes ``<group>-NN.png`` at 128 x 128, ``manifest.csv`` (one row per image: group, generator,
sampler, steps, eta, seed, weights and their SHA-256) and ``settings.json``. Few real subjects
exist offline (MNI152 and Colin27 train the generators), so the samples vary little in anatomy: a
demo of screening, not a benchmark of generators.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from core.benchmark.seeds import GENERATED_SET_SEED
from core.benchmark.turing_set import round_trip
from core.detectors.diffusion import DiffusionDetector, from_diffusion_grid
from core.detectors.vae import VAE
from core.reference import load_split
from core.resources import PROJECT_ROOT, file_sha256, shown_path

GENERATED_SET_DIR = PROJECT_ROOT / "demo" / "generated_mri_t1"
MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class Group:
    """One group of images in the set: who made them and how."""

    name: str
    generator: str  # "ddpm", "vae" or "real"
    n: int
    sampler: str = ""  # "ddpm" or "ddim" for the DDPM
    steps: int = 0  # model calls per sample
    eta: float | None = None  # DDIM's eta; None for the ancestral sampler
    about: str = ""


DEFAULT_GROUPS: tuple[Group, ...] = (
    Group("ddpm-1000", "ddpm", 12, "ddpm", 1000, None, "ancestral DDPM, all 1000 training timesteps"),
    Group("ddim-50", "ddpm", 8, "ddim", 50, 0.0, "deterministic DDIM, 50 steps"),
    Group("ddim-10", "ddpm", 8, "ddim", 10, 0.0, "deterministic DDIM, 10 steps (too few: noise remains)"),
    Group("vae", "vae", 12, about="VAE decoder, latents from a Gaussian fitted to the training posteriors"),
    Group("real-128", "real", 8, about="real held-out test slices, 8-bit PNG"),
    Group("real-64", "real", 8, about="real held-out test slices through the DDPM's 64 px grid and back"),
)


def sample_diffusion(model, config, n: int, *, sampler: str, steps: int, seed: int, eta: float = 0.0) -> np.ndarray:
    """``n`` samples from pure noise, ``(n, S, S)`` in [0, 1] on the model's ``config.image_size`` grid.

    Args:
        model: a MONAI ``DiffusionModelUNet`` trained to predict the noise.
        config: its :class:`core.detectors.diffusion.DiffusionConfig` (schedule, timesteps, grid).
        sampler: ``"ddpm"`` (ancestral; ``steps`` must be the training timesteps) or ``"ddim"``.
        steps: number of model calls.
        seed: seeds the starting noise and, for DDPM, every step's noise.
        eta: DDIM's stochasticity (0: deterministic).
    """
    from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

    if sampler == "ddpm":
        scheduler = DDPMScheduler(num_train_timesteps=config.num_train_timesteps, schedule=config.schedule,
                                  clip_sample=True)
    elif sampler == "ddim":
        scheduler = DDIMScheduler(num_train_timesteps=config.num_train_timesteps, schedule=config.schedule,
                                  clip_sample=True)
    else:
        raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
    if not 0 < steps <= config.num_train_timesteps:
        raise ValueError(f"steps must be in 1..{config.num_train_timesteps}, got {steps}")
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((n, 1, config.image_size, config.image_size), generator=generator)
    model = model.eval()
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = model(x, timesteps=torch.full((n,), int(t), dtype=torch.long))
            if sampler == "ddpm":
                x, _ = scheduler.step(eps, int(t), x, generator=generator)
            else:
                x, _ = scheduler.step(eps, int(t), x, eta=eta, generator=generator)
    return ((x.clamp(-1.0, 1.0) + 1.0) / 2.0)[:, 0].numpy()


def sample_vae(vae, train_images: np.ndarray, n: int, *, seed: int, batch_size: int = 64) -> np.ndarray:
    """``n`` VAE samples ``(n, H, W)`` in [0, 1]: latents from a Gaussian fitted to the posterior means of
    ``train_images`` (the ex-post density), decoded."""
    with torch.no_grad():
        means = torch.cat([vae.encode(torch.from_numpy(train_images[i:i + batch_size, None].astype(np.float32)))[0]
                           for i in range(0, len(train_images), batch_size)])
        covariance = torch.cov(means.T) + 1e-4 * torch.eye(means.shape[1])
        density = torch.distributions.MultivariateNormal(means.mean(0), covariance_matrix=covariance)
        torch.manual_seed(seed)
        latents = density.sample((n,))
        return vae.decode(latents)[:, 0].clamp(0, 1).numpy()


def to_grid(images: np.ndarray, size: int) -> np.ndarray:
    """``(N, h, w)`` images in [0, 1] resized to ``size`` the way the diffusion model's output is."""
    if images.shape[-1] == size:
        return images
    return from_diffusion_grid(torch.from_numpy(images[:, None].astype(np.float32)), size)[:, 0].clamp(0, 1).numpy()


def make_generated_set(out_dir: Path = GENERATED_SET_DIR, *, generator_weights: Path, vae_weights: Path,
                       reference_dir: Path, seed: int = GENERATED_SET_SEED, groups: tuple[Group, ...] = DEFAULT_GROUPS,
                       progress=None) -> pd.DataFrame:
    """Sample every group, write the PNGs, ``manifest.csv`` and ``settings.json``; return the manifest.

    Group ``k`` is seeded with ``seed + k``, so a group can be regenerated alone. The real controls
    are drawn (seeded) from the un-augmented slices of the reference's test split, which no model
    was trained on.
    """
    diffusion = DiffusionDetector.load(Path(generator_weights))
    vae = VAE.load(Path(vae_weights))
    train = load_split(Path(reference_dir), "train")
    test = load_split(Path(reference_dir), "test")
    size = test.images.shape[-1]
    plain = np.flatnonzero(test.augmentation == 0)
    real_draw = np.random.default_rng(seed).permutation(plain)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.png"):
        old.unlink()
    rows, used_real = [], 0
    for k, group in enumerate(groups):
        group_seed = seed + k
        weights = None
        if group.generator == "ddpm":
            images = to_grid(sample_diffusion(diffusion.model, diffusion.config, group.n, sampler=group.sampler,
                                              steps=group.steps, seed=group_seed, eta=group.eta or 0.0), size)
            weights = Path(generator_weights)
        elif group.generator == "vae":
            images = to_grid(sample_vae(vae, train.images, group.n, seed=group_seed), size)
            weights = Path(vae_weights)
        elif group.generator == "real":
            picked = real_draw[used_real:used_real + group.n]
            used_real += group.n
            if len(picked) < group.n:
                raise ValueError(f"the test split has too few real slices for group {group.name!r}")
            images = test.images[picked]
            if group.name.endswith("-64"):
                images = round_trip(images, diffusion.config.image_size)
        else:
            raise ValueError(f"unknown generator {group.generator!r}")
        shown, digest = (shown_path(weights), file_sha256(weights)) if weights is not None else ("", "")
        for i, image in enumerate(images):
            name = f"{group.name}-{i:02d}.png"
            Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(out_dir / name)
            rows.append({"file": name, "group": group.name, "generator": group.generator, "sampler": group.sampler,
                         "steps": group.steps, "eta": group.eta, "seed": group_seed,
                         "source": (f"{test.subject[picked[i]]}:{int(test.slice_index[picked[i]])}"
                                    if group.generator == "real" else ""),
                         "weights": shown, "weights_sha256": digest})
        if progress is not None:
            progress(group.name, len(images))
    manifest = pd.DataFrame(rows)
    manifest.to_csv(out_dir / MANIFEST, index=False)
    settings = {
        "command": "python -m workflows.cli make-generated-set",
        "seed": seed,
        "image_size": int(size),
        "diffusion_grid": int(diffusion.config.image_size),
        "clip_sample": True,
        "schedule": diffusion.config.schedule,
        "num_train_timesteps": diffusion.config.num_train_timesteps,
        "reference": shown_path(reference_dir),
        "groups": [asdict(g) for g in groups],
    }
    (out_dir / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    return manifest


def read_manifest(folder: Path) -> pd.DataFrame | None:
    """The ``manifest.csv`` of a generated set in ``folder`` (``file`` and ``group`` columns), or None
    (also for a file that is not a readable CSV: the group summary is an extra, never a failure)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path, dtype={"file": str, "group": str}, keep_default_na=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError):  # EmptyDataError is a ValueError
        return None
    return table if {"file", "group"} <= set(table.columns) else None


def with_groups(screening_table: pd.DataFrame, manifest: pd.DataFrame | None) -> pd.DataFrame:
    """``screening_table`` with the manifest's ``group`` of each file after ``file`` ("" for a file the
    manifest does not list); unchanged without a manifest."""
    if manifest is None:
        return screening_table
    groups = dict(zip(manifest["file"], manifest["group"], strict=True))
    table = screening_table.copy()
    table.insert(table.columns.get_loc("file") + 1, "group", table["file"].map(groups).fillna(""))
    return table


def group_summary(screening_table: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """Per group of the manifest: images scored, median and max score, flagged count and share.

    ``screening_table`` is a :class:`workflows.screening.Screening` table (``file``, ``score``, ``flag``,
    ``error``); files are matched by name. Groups keep the manifest's order.
    """
    scored = screening_table[screening_table["error"] == ""][["file", "score", "flag"]]
    merged = manifest[["file", "group"]].merge(scored, on="file", how="inner")
    order = list(dict.fromkeys(manifest["group"]))
    rows = []
    for group in order:
        part = merged[merged["group"] == group]
        if part.empty:
            continue
        flagged = int(part["flag"].astype(bool).sum())
        rows.append({"group": group, "images": len(part), "median score": float(part["score"].median()),
                     "max score": float(part["score"].max()), "flagged": flagged,
                     "flagged share": flagged / len(part)})
    return pd.DataFrame(rows, columns=["group", "images", "median score", "max score", "flagged", "flagged share"])
