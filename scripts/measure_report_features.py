"""Which of SAFEGEN's networks gives the generator report card its features: KID per group, per candidate layer.

    python scripts/measure_report_features.py FOLDER [FOLDER ...]

Each FOLDER is a generated set with a ``manifest.csv`` (``python -m workflows.cli make-generated-set``). For
every candidate feature layer below it prints each group's KID (± its standard error) against the profile
reference's train split, the real set of ``report``. The choice is made on a validation set (a generated set
of another seed than the demo's), by the rule in :data:`RULE`, and only then read on the demo set.

The candidates are SAFEGEN's own networks, which install offline:

* ``ae_bottleneck``: the denoising autoencoder's 8x8x64 bottleneck, average-pooled (the first choice), raw or
  standardised (``_z``: each feature centred and scaled on the real set);
* ``ae_stages_meanstd``: every stage of the autoencoder's encoder, each pooled to its channels' mean and standard
  deviation (texture statistics, as in style features);
* ``head_stages_meanstd``: the same over the encoder stages of the segmentation head (``models/head_mri_t1.pt``),
  trained to tell local blur, noise, gratings and foreign texture from normal anatomy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import generator_report as gr  # noqa: E402
from core.benchmark.generated_set import read_manifest  # noqa: E402

RULE = ("a candidate passes when both real control groups have the two lowest KIDs and the DDPM sampler's groups "
        "get worse as the steps fall (KID ddpm-1000 < ddim-50 < ddim-10); among those that pass, the one whose "
        "smallest step between consecutive groups of that order, in standard errors, is largest")
ORDER = ("ddpm-1000", "ddim-50", "ddim-10")
REAL = ("real-128", "real-64")


def _autoencoder():
    from core.detectors.autoencoder import AutoencoderDetector
    from core.profiles import get_profile

    return AutoencoderDetector.load(get_profile("mri_t1").model_file("autoencoder")).model


def ae_bottleneck() -> gr.FeatureEncoder:
    encode = _autoencoder().encode
    return gr.FeatureEncoder(encode, (encode,), gr.AUTOENCODER_FEATURES, pool_std=False)


def ae_stages() -> gr.FeatureEncoder:
    encode = _autoencoder().encode
    return gr.FeatureEncoder(encode, tuple(encode), "every autoencoder encoder stage, mean + SD")


def head_stages() -> gr.FeatureEncoder:
    encoder = gr.load_feature_encoder("mri_t1")  # what the report uses now
    assert encoder.layer == gr.HEAD_FEATURES
    return encoder


# name -> (the encoder, standardised on the real set: each feature centred and scaled by the real images' spread)
CANDIDATES = {
    "ae_bottleneck": (ae_bottleneck, False),  # the report's first layer
    "ae_bottleneck_z": (ae_bottleneck, True),
    "ae_stages_meanstd_z": (ae_stages, True),
    "head_stages_meanstd_z": (head_stages, True),
}


def measure(folder: Path, real: np.ndarray) -> dict[str, dict[str, tuple[float, float]]]:
    manifest = read_manifest(folder)
    images = gr.prepare_image_files([folder / f for f in manifest["file"]], "mri_t1")
    groups = manifest["group"].to_numpy()
    table = {}
    for name, (make, standardise) in CANDIDATES.items():
        encoder = make()
        encoder = encoder.standardised_on(real) if standardise else encoder
        real_feats, gen_feats = encoder(real), encoder(images)
        table[name] = {}
        for group in dict.fromkeys(groups):
            value, se = gr.kid(real_feats, gen_feats[groups == group])
            table[name][group] = (value, se)
    return table


def passes(kids: dict[str, tuple[float, float]]) -> tuple[bool, float]:
    """The rule (:data:`RULE`): pass or not, and the smallest step of the sampler order in standard errors."""
    ranked = sorted(kids, key=lambda g: kids[g][0])
    real_first = set(ranked[:2]) == set(REAL)
    steps = [(kids[b][0] - kids[a][0]) / max(np.hypot(kids[a][1], kids[b][1]), 1e-12)
             for a, b in zip(ORDER, ORDER[1:])]
    return real_first and min(steps) > 0, float(min(steps))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args(argv)
    from workflows.report import reference_real_set

    real = reference_real_set("mri_t1").images
    print(f"rule: {RULE}")
    for folder in args.folders:
        table = measure(folder, real)
        print(f"\n{folder} (KID ± SE against {len(real)} real reference images)")
        groups = list(next(iter(table.values())))
        print(f"{'candidate':22s} " + " ".join(f"{g:>16s}" for g in groups) + "   pass  min step (SE)")
        for name, kids in table.items():
            ok, step = passes(kids)
            cells = " ".join(f"{kids[g][0]:9.2f} ±{kids[g][1]:6.2f}" for g in groups)
            print(f"{name:22s} {cells}   {'yes' if ok else 'no ':4s} {step:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
