"""The demo's generated set: samplers with an oracle noise predictor, the VAE's ex-post density, the
group summary, the committed set's manifest, and the batch page on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from core.benchmark.generated_set import (
    DEFAULT_GROUPS,
    GENERATED_SET_DIR,
    Group,
    group_summary,
    make_generated_set,
    read_manifest,
    sample_diffusion,
    sample_vae,
)
from core.detectors.diffusion import DiffusionConfig

CONFIG = DiffusionConfig(image_size=8, num_train_timesteps=100)


class Oracle(torch.nn.Module):
    """The exact noise predictor of a data set that holds one image ``x_star`` (in [-1, 1]):
    ``eps(x_t, t) = (x_t - sqrt(abar_t) x_star) / sqrt(1 - abar_t)``. Every sampler must return ``x_star``."""

    def __init__(self, x_star: float, config: DiffusionConfig) -> None:
        super().__init__()
        from monai.networks.schedulers import DDPMScheduler

        self.x_star = x_star
        self.abar = DDPMScheduler(num_train_timesteps=config.num_train_timesteps,
                                  schedule=config.schedule).alphas_cumprod
        self.calls = 0

    def forward(self, x, timesteps):
        self.calls += 1
        abar = self.abar[timesteps].view(-1, 1, 1, 1)
        return (x - abar.sqrt() * self.x_star) / (1 - abar).sqrt()


class Zero(torch.nn.Module):
    """A noise predictor that never sees noise."""

    def forward(self, x, timesteps):
        return torch.zeros_like(x)


@pytest.mark.parametrize("sampler,steps", [("ddpm", 100), ("ddim", 10), ("ddim", 3)])
def test_every_sampler_returns_the_only_image_an_oracle_knows(sampler, steps):
    oracle = Oracle(-0.4, CONFIG)  # 0.3 on the [0, 1] scale
    images = sample_diffusion(oracle, CONFIG, 3, sampler=sampler, steps=steps, seed=0)
    assert images.shape == (3, 8, 8)
    np.testing.assert_allclose(images, 0.3, atol=1e-4)
    assert oracle.calls == steps


def test_sampling_is_seeded_and_checks_its_settings():
    model = Zero()
    a = sample_diffusion(model, CONFIG, 2, sampler="ddpm", steps=100, seed=1)
    b = sample_diffusion(model, CONFIG, 2, sampler="ddpm", steps=100, seed=1)
    c = sample_diffusion(model, CONFIG, 2, sampler="ddpm", steps=100, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert 0.0 <= a.min() and a.max() <= 1.0
    with pytest.raises(ValueError, match="sampler"):
        sample_diffusion(model, CONFIG, 1, sampler="euler", steps=10, seed=0)
    with pytest.raises(ValueError, match="steps"):
        sample_diffusion(model, CONFIG, 1, sampler="ddim", steps=0, seed=0)


def test_vae_samples_of_a_one_image_data_set_are_its_reconstruction():
    """Posterior means of 20 copies of one slice: the fitted Gaussian has (almost) no spread, so every
    sample decodes to the VAE's reconstruction of that slice."""
    from core.detectors.vae import VAE
    from core.profiles import KNOWN_SUBJECTS
    from core.reference import subject_slices

    vae = VAE.load()
    slices = subject_slices(KNOWN_SUBJECTS[0]).images
    one = slices[len(slices) // 2]
    samples = sample_vae(vae, np.repeat(one[None], 20, axis=0), 4, seed=0)
    with torch.no_grad():
        reconstruction = vae(torch.from_numpy(one[None, None]))[0, 0].numpy()
    assert samples.shape == (4, 128, 128)
    assert np.abs(samples - reconstruction).max() < 0.05
    np.testing.assert_array_equal(samples, sample_vae(vae, np.repeat(one[None], 20, axis=0), 4, seed=0))


def test_group_summary_counts_flags_per_group_in_manifest_order():
    manifest = pd.DataFrame({"file": ["a.png", "b.png", "c.png", "d.png", "e.png"],
                             "group": ["vae", "vae", "ddpm", "ddpm", "gone"]})
    table = pd.DataFrame({"file": ["c.png", "a.png", "b.png", "d.png", "x.png", "e.png"],
                          "score": [5.0, 3.0, 1.0, 2.0, 9.0, np.nan],
                          "flag": [True, True, False, False, True, False],
                          "error": ["", "", "", "", "", "cannot read"]})
    summary = group_summary(table, manifest)
    assert summary["group"].tolist() == ["vae", "ddpm"]  # "gone" has only an error row
    assert summary["images"].tolist() == [2, 2]
    assert summary["median score"].tolist() == [2.0, 3.5]
    assert summary["max score"].tolist() == [3.0, 5.0]
    assert summary["flagged"].tolist() == [1, 1]
    assert summary["flagged share"].tolist() == [0.5, 0.5]


def test_a_manifest_that_is_not_a_readable_csv_is_ignored(tmp_path):
    assert read_manifest(tmp_path) is None
    (tmp_path / "manifest.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    assert read_manifest(tmp_path) is None
    (tmp_path / "manifest.csv").write_text("")
    assert read_manifest(tmp_path) is None
    (tmp_path / "manifest.csv").write_text("name,kind\na.png,x\n")  # no file / group columns
    assert read_manifest(tmp_path) is None
    (tmp_path / "manifest.csv").write_text("file,group\na.png,x\n")
    assert read_manifest(tmp_path)["group"].tolist() == ["x"]


def test_a_small_set_is_written_with_its_settings_and_reproduced_byte_for_byte(tmp_path):
    from core.profiles import MRI_T1
    from tests.test_turing_set import tiny_reference

    reference = tiny_reference(tmp_path / "reference", n=6)
    np.savez(reference / "train.npz", **dict(np.load(reference / "test.npz")))  # the VAE's density
    groups = (Group("ddim-2", "ddpm", 2, "ddim", 2, 0.0), Group("vae", "vae", 2), Group("real-64", "real", 2))
    kwargs = dict(generator_weights=MRI_T1.model_file("generator"), vae_weights=MRI_T1.model_file("vae"),
                  reference_dir=reference, seed=9, groups=groups)
    manifest = make_generated_set(tmp_path / "set", **kwargs)
    assert manifest["file"].tolist() == ["ddim-2-00.png", "ddim-2-01.png", "vae-00.png", "vae-01.png",
                                         "real-64-00.png", "real-64-01.png"]
    assert manifest["seed"].tolist() == [9, 9, 10, 10, 11, 11]
    assert manifest["weights"].tolist()[:4] == ["models/generator_mri_t1.pt"] * 2 + ["models/vae_mri_t1.pt"] * 2
    assert all(manifest["source"][4:].str.startswith("mni152:"))
    assert read_manifest(tmp_path / "set").equals(pd.read_csv(tmp_path / "set" / "manifest.csv",
                                                              dtype={"file": str, "group": str},
                                                              keep_default_na=False))
    for name in manifest["file"]:
        assert np.asarray(Image.open(tmp_path / "set" / name)).shape == (128, 128)
    make_generated_set(tmp_path / "again", **kwargs)
    for name in manifest["file"]:
        assert (tmp_path / "set" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_the_committed_set_matches_its_manifest_and_the_committed_generator():
    from core.resources import file_sha256 as sha256
    from core.profiles import MRI_T1

    manifest = read_manifest(GENERATED_SET_DIR)
    assert manifest is not None
    assert sorted(manifest["file"]) == sorted(p.name for p in GENERATED_SET_DIR.glob("*.png"))
    counts = manifest.groupby("group", sort=False).size().to_dict()
    assert counts == {g.name: g.n for g in DEFAULT_GROUPS}
    ddpm = manifest[manifest["generator"] == "ddpm"]
    assert set(ddpm["weights_sha256"]) == {sha256(MRI_T1.model_file("generator"))}
    assert sha256(MRI_T1.model_file("generator")) != sha256(MRI_T1.model_file("diffusion"))  # not the detector


def small_set(folder: Path) -> pd.DataFrame:
    """Four files of the committed set (three groups) and their manifest rows, copied to ``folder``."""
    import shutil

    manifest = read_manifest(GENERATED_SET_DIR)
    picked = manifest[manifest["file"].isin(["ddim-10-00.png", "ddim-10-01.png", "vae-00.png", "real-128-00.png"])]
    folder.mkdir()
    for name in picked["file"]:
        shutil.copy(GENERATED_SET_DIR / name, folder / name)
    picked.to_csv(folder / "manifest.csv", index=False)
    return picked


def test_the_batch_page_opens_on_the_generated_set_and_sums_up_any_folder_by_group(tmp_path):
    """The page offers the whole committed set first; scoring a folder with a manifest adds one row per group
    (a four-file folder here: the whole set takes about 90 s under AppTest)."""
    from streamlit.testing.v1 import AppTest

    from tests.test_screening import batch_page_on_folder
    from ui.state import BATCH_DEMO, Keys

    app = str(Path(__file__).resolve().parent.parent / "app.py")
    at = AppTest.from_file(app, default_timeout=120)
    at.run()
    at.switch_page("pages/batch_screening.py")
    at.run()
    assert at.radio(key=Keys.BATCH_SOURCE).value == BATCH_DEMO
    assert at.button(key=Keys.BATCH_RUN).label == f"Score {sum(g.n for g in DEFAULT_GROUPS)} file(s)"
    small_set(tmp_path / "set")
    at = batch_page_on_folder(tmp_path / "set", finish=True)
    summary = at.dataframe[0].value  # the group summary comes before the ranked table
    ranked = at.dataframe[1].value
    assert summary["group"].tolist() == ["ddim-10", "vae", "real-128"]
    assert summary["images"].tolist() == [2, 1, 1]
    assert summary["flagged"].sum() == int(ranked["flag"].sum())
    top = ranked.set_index("file")["score"]
    assert summary.loc[0, "max score"] == pytest.approx(max(top["ddim-10-00.png"], top["ddim-10-01.png"]))


def test_score_adds_a_per_group_table_when_the_folder_has_a_manifest(tmp_path):
    from workflows.score_folder import score_folder

    folder = tmp_path / "set"
    small_set(folder)
    assert score_folder(folder, tmp_path / "out", profile="mri_t1", explainer="residual") == 0
    scores = pd.read_csv(tmp_path / "out" / "scores.csv").set_index("file")
    groups = pd.read_csv(tmp_path / "out" / "groups.csv")
    assert groups["group"].tolist() == ["ddim-10", "vae", "real-128"]
    assert groups["images"].tolist() == [2, 1, 1]
    ddim = scores.loc[["ddim-10-00.png", "ddim-10-01.png"], "score"]
    assert groups.loc[0, "median score"] == pytest.approx(ddim.median(), abs=1e-4)
    assert groups.loc[0, "max score"] == pytest.approx(ddim.max(), abs=1e-4)
    assert groups["flagged"].tolist() == [int(scores.loc[["ddim-10-00.png", "ddim-10-01.png"], "flag"].sum()),
                                          int(scores.loc["vae-00.png", "flag"]), int(scores.loc["real-128-00.png", "flag"])]
