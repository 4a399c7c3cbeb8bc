"""Tables for the About page (kept out of the page so it stays a layout file)."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version

import pandas as pd

from core.demo import DEMO_CASES
from core.head_scoring import HeadCalibration, head_calibration_file
from core.profiles import MRI_T1, all_profiles
from core.scoring import Calibration

INPUT_NAMES = {"autoencoder": "E_AE", "diffusion": "S_diffusion"}  # the head's reconstruction inputs

_PACKAGES = ("torch", "monai", "streamlit", "nibabel", "pydicom", "nilearn", "captum", "shap", "SQLAlchemy")


def data_sources_table() -> pd.DataFrame:
    rows = [
        {
            "use": f"reference of the {profile.title} profile (normal anatomy)",
            "name": s.name,
            "description": s.description,
            "installed by": s.provenance,
            "present": s.path is not None and s.path.is_file(),
        }
        for profile in all_profiles().values()
        for s in profile.subjects
    ]
    rows += [
        {
            "use": "demo scan",
            "name": c.key,
            "description": c.description,
            "installed by": c.provenance,
            "present": c.available,
        }
        for c in DEMO_CASES
    ]
    return pd.DataFrame(rows)


def versions_table() -> pd.DataFrame:
    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return pd.DataFrame([{"package": p, "version": installed(p)} for p in _PACKAGES])


def models_table() -> pd.DataFrame:
    """One row per committed detector of every profile, read from its JSON sidecar (how it was trained, on what)."""
    rows = []
    networks = (("autoencoder", "MONAI AutoEncoder (denoising, no skips)"),
                ("diffusion", "MONAI DiffusionModelUNet + DDPM/DDIM schedulers"))
    listed = [(p.model_file(kind), net) for p in all_profiles().values() for kind, net in networks]
    generator = MRI_T1.model_file("generator")
    if generator.is_file():  # not a detector: the DDPM that made the batch page's generated demo set
        listed.append((generator, "MONAI DiffusionModelUNet, DDPM generator of the demo's generated set"))
    for weights, network in listed:
        sidecar = weights.with_suffix(".json")
        if not sidecar.is_file():
            rows.append({"model": weights.name, "network": network, "trained with": "missing"})
            continue
        meta = json.loads(sidecar.read_text())
        history = meta.get("history", {})
        rows.append({
            "model": weights.name,
            "network": network,
            "trained with": f"`{meta.get('command', '')}` (seed {meta.get('seed')}, {meta.get('steps')} steps)",
            "training images": f"{meta.get('train_images')} slices of {', '.join(meta.get('reference_subjects', []))}",
            "final val loss": round(history["val_loss"][-1], 4) if history.get("val_loss") else None,
            "CPU minutes": round(history.get("seconds", 0.0) / 60, 1),
            "size (MB)": round(weights.stat().st_size / 2**20, 2) if weights.is_file() else None,
        })
    head = MRI_T1.model_file("head")
    if head.is_file() and head.with_suffix(".json").is_file():  # the segmentation head: the detector
        meta = json.loads(head.with_suffix(".json").read_text())
        training, curve = meta["training"], meta["validation_curve"]
        kept = curve["step"].index(training["kept_step"])
        rows.append({
            "model": head.name,
            "network": "MONAI UNet segmentation head on " + (
                "the slice alone (on the realistic validation set the E_AE / S_diffusion reconstructions did not help it)"
                if meta["config"]["inputs"] == ["image"] else
                "the slice and its " + " / ".join(INPUT_NAMES[k] for k in meta["config"]["inputs"][1:]) + " reconstructions"),
            "trained with": f"`{meta.get('command', '')}` (seed {training['seed']}, {training['steps']} steps)",
            "training images": f"{training['pool_size']} varied, corrupted slices at a time of "
                               f"{', '.join(training['subjects'])} (held out: {training['held_out']})",
            "final val loss": None,
            "synthetic validation (kept step)": (f"image AUROC {curve['image_auroc'][kept]:.3f}, Dice "
                                                 f"{curve['dice'][kept]:.3f}, pixel AUROC {curve['pixel_auroc'][kept]:.3f} "
                                                 f"(step {training['kept_step']})"),
            "CPU minutes": round(training["seconds"] / 60, 1),
            "size (MB)": round(head.stat().st_size / 2**20, 2),
        })
    return pd.DataFrame(rows)


def calibration_facts() -> dict[str, str]:
    """Per profile, the calibrated settings a reader of a score needs: alpha, tau, the false-alarm rate and its basis."""
    facts = {}
    for profile in all_profiles().values():
        if not profile.calibration_file().is_file():
            continue
        calibration = Calibration.load(profile.calibration_file())
        meta = calibration.metadata
        facts[f"{profile.title}: α (weight of S_diffusion)"] = (
            f"{calibration.alpha:.2f}, chosen on {meta.get('val_images')} validation benchmark slices "
            "(never the reported ones)")
        facts[f"{profile.title}: τ (default tolerance)"] = (
            f"{calibration.tau(calibration.alpha):.3f} z, flags {calibration.false_alarm_rate:.0%} of "
            f"{meta.get('calib_images')} real clean calibration slices")

    for profile in all_profiles().values():
        path = head_calibration_file(profile)
        if not path.is_file():
            continue
        head = HeadCalibration.load(path)
        facts[f"{profile.title}: head τ (a 2-D image)"] = (
            f"{head.slice_tau():.3f} (anomaly probability), flags {head.false_alarm_rate:.0%} of "
            f"{len(head.calib_scores)} clean calibration slices under normal variation")
        if head.volume_scores is not None:
            facts[f"{profile.title}: head τ (a volume)"] = (
                f"{head.volume_tau(150):.6f}: any slice above it flags the volume; flags {head.false_alarm_rate:.0%} "
                f"of {len(head.volume_scores)} clean whole volumes of the training subjects")
        else:
            facts[f"{profile.title}: head τ (a volume of 150 slices)"] = (
                f"{head.volume_tau(150):.6f}: any slice above it flags the volume, {head.false_alarm_rate:.0%} of "
                "clean volumes at most (Bonferroni over the slices)")
    return facts
