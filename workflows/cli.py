"""SAFEGEN command line: ``python -m workflows.cli COMMAND ...``.

Commands:
    info FILE              load a scan and print what SAFEGEN sees (exit 2 on bad input)
    build-reference        build train/val/calib/test slices of real normal anatomy
    make-benchmark         corrupt reference slices with simulated artifacts (+ exact masks)
    make-turing-set        real slices and synthetic ones from the diffusion model (visual Turing test)
    train autoencoder      train the denoising autoencoder on the reference train split (seeded, CPU)
    train diffusion        train the diffusion model on the reference train split (seeded, CPU)
    train vae              train the small VAE behind the latent_ig explainer (seeded, CPU)
    train generator        train the diffusion model that samples the demo's generated set (seed 1, CPU)
    train-head             train the anomaly-segmentation head on corrupted real slices (seeded, CPU, --resume)
    calibrate-head         the head's slice threshold (clean calib slices under normal variation), volume
                           threshold (clean whole volumes) and its explainers' scale
    calibrate-domain       the appearance check: what the head's training slices look like to the head
    train-loko             the leave-one-kind-out heads (each without the corruptions closest to one artifact kind)
    train-profile NAME     train a profile on a folder of your own real images (reference, models, calibration)
    make-generated-set     sample the demo's generated set (DDPM generator at three sampler settings, VAE, real controls)
    calibrate              fit score scales on the calib split, choose alpha on a validation benchmark
    calibrate-explainers   put every explainer's map on the score's scale (quantiles on calib slices)
    score INPUT_DIR        score every image in a folder: scores.csv, masks/, heatmaps/
    report GENERATED       a generator's report card: fidelity, coverage, diversity, likely copies of training
                           images and artifact flags per group (report.md, report.json, CSVs, PNGs)
    evaluate               detection, localisation and explainer metrics on a benchmark, with the ablations
                           (--methods all: SAFEGEN against every baseline, one table)
    make-realistic-benchmark  real slices under normal variation, half with one artifact (+ held-out subject)
    evaluate-realistic     the head, the seed's scores and baselines on the realistic benchmark; unseen-subject
                           false alarms for slices and volumes
    evaluate-loko          the leave-one-kind-out table of the train-loko heads
    bench                  timings on this machine

Every command that builds, trains, calibrates, scores or evaluates takes ``--profile`` (core.profiles:
mri_t1, the default, or ct_head); its data and model files default to that profile's. ``score``
defaults to ``--profile auto``: each file's modality picks the profile.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from core.benchmark.seeds import GENERATED_SET_SEED, REALISTIC_SEED, TURING_SEED, UNSEEN_VOLUMES_SEED_OFFSET
from core.errors import InputError
from core.io import ACCEPTED_SUFFIXES, MAX_DECODED_BYTES, SizeLimits, check_scorable, load_volume
from core.types import SAFEGEN_METHOD, Modality

EXIT_BAD_INPUT = 2

# Defaults of ``train MODEL``; the committed weights were trained with exactly these. The weights
# file is the profile's (``models/<model>_<profile>.pt``).
TRAIN_DEFAULTS = {
    "autoencoder": {"steps": 1500, "learning_rate": 1e-3},
    "diffusion": {"steps": 1500, "learning_rate": 5e-4},
    # Not a detector: the generator of the latent_ig explainer (core.detectors.vae).
    "vae": {"steps": 1500, "learning_rate": 1e-3},
    # Not a detector either: the diffusion model whose samples are the demo's generated set
    # (core.benchmark.generated_set). Same recipe as the detector's, another seed, so SAFEGEN never judges
    # the samples of its own weights.
    "generator": {"steps": 1500, "learning_rate": 5e-4, "seed": 1},
}


def _shown(path: Path) -> str:
    """A path as recorded in sidecar files (:func:`core.resources.shown_path`)."""
    from core.resources import shown_path

    return shown_path(path)


def _profile(args: argparse.Namespace):
    """The profile named by ``--profile`` (default mri_t1); fills the path options left unset with its files."""
    from core.profiles import get_profile

    profile = get_profile(getattr(args, "profile", None) or "mri_t1")
    defaults = {"reference": profile.reference_dir, "validation": profile.validation_dir,
                "benchmark": profile.benchmark_dir}
    for key, value in defaults.items():
        if hasattr(args, key) and getattr(args, key) is None:
            setattr(args, key, value)
    return profile


def _cmd_info(args: argparse.Namespace) -> int:
    limits = SizeLimits(max_file_bytes=int(args.max_file_mb * 2**20),
                        max_decoded_bytes=int(args.max_decoded_mb * 2**20))
    modality = Modality(args.modality) if args.modality else None
    volume = load_volume(args.path, modality=modality, limits=limits)
    check_scorable(volume)
    finite = volume.array[np.isfinite(volume.array)]
    summary = {
        "source": volume.source,
        "modality": volume.modality.value,
        "shape": list(volume.array.shape),
        "spacing_mm": [round(float(s), 4) for s in volume.spacing],
        "n_slices": volume.n_slices,
        "intensity_min": float(finite.min()),
        "intensity_max": float(finite.max()),
        "window": None if volume.window is None else [volume.window.center, volume.window.width],
        "description": volume.description,
        "warnings": volume.warnings,
    }
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_build_reference(args: argparse.Namespace) -> int:
    from core.reference import build_reference

    profile = _profile(args)
    out = args.out or profile.reference_dir
    start = time.perf_counter()
    manifest = build_reference(out, seed=args.seed, augment_per_slice=args.augment, profile=profile)
    print(f"profile {profile.name}; subjects: {', '.join(s['name'] for s in manifest.subjects)}")
    print("images per split: " + ", ".join(f"{k}={v}" for k, v in manifest.counts.items()))
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_make_benchmark(args: argparse.Namespace) -> int:
    from core.benchmark.simulated import benchmark_from_reference

    start = time.perf_counter()
    table = benchmark_from_reference(args.reference, args.split, args.out, seed=args.seed,
                                     n_per_kind_severity=args.n_per)
    counts = table.groupby("kind").size().to_dict()
    print(f"{len(table)} images ({int(table.label.sum())} with artifacts) from {int((table.label == 0).sum())} real "
          f"{args.split} slices: {counts}")
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_make_turing_set(args: argparse.Namespace) -> int:
    from core.benchmark.turing_set import make_turing_set

    start = time.perf_counter()
    levels = tuple(int(v) for v in args.levels.split(","))
    table = make_turing_set(args.reference, args.out, n=args.n, seed=args.seed, levels=levels, split=args.split)
    print(f"{int((table.truth == 'real').sum())} real and {int((table.truth == 'synthetic').sum())} synthetic "
          f"images (SDEdit levels {args.levels}); case list {args.out / 'cases.csv'}")
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def _two_numbers(text: str) -> tuple[float, float] | None:
    """``"40,80"`` as ``(40.0, 80.0)``; None when ``text`` is not two comma-separated numbers (the caller
    says what its option takes)."""
    try:
        first, second = (float(v) for v in text.split(","))
    except ValueError:
        return None
    return first, second


def _cmd_train_profile(args: argparse.Namespace) -> int:
    from core.types import Window
    from workflows.user_profile import make_user_profile, training_steps

    window = None
    if args.window:
        if (pair := _two_numbers(args.window)) is None:
            print(f"error: --window takes LEVEL,WIDTH in HU, e.g. 40,80; got {args.window!r}", file=sys.stderr)
            return EXIT_BAD_INPUT
        window = Window(*pair, "user")
    try:
        profile = make_user_profile(args.name, args.images, home=args.out, modality=args.modality, window=window)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"profile {profile.name}: {profile.modality.value}, subjects "
          f"{', '.join(s.name for s in profile.subjects)}; files in {profile.home}", file=sys.stderr)
    start = time.perf_counter()
    for step in training_steps(profile, seed=args.seed, steps=args.steps, augment=args.augment, n_per=args.n_per,
                               shap_samples=args.shap_samples):
        print(f"\n== python -m workflows.cli {' '.join(step)}", file=sys.stderr)
        try:
            status = main(step)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            status = EXIT_BAD_INPUT
        if status != 0:
            print(f"error: train-profile stopped at `{step[0]}` (exit {status}); {profile.home} holds what was "
                  "made so far", file=sys.stderr)
            return status
    print(f"trained profile {profile.name} in {time.perf_counter() - start:.0f} s; use it with "
          f"`python -m workflows.cli score FOLDER --profile {profile.name}` or pick it in the dashboard")
    return 0


def _cmd_make_generated_set(args: argparse.Namespace) -> int:
    from core.benchmark.generated_set import GENERATED_SET_DIR, make_generated_set
    from core.profiles import MRI_T1

    start = time.perf_counter()
    out = args.out or GENERATED_SET_DIR

    def report(group: str, n: int) -> None:
        print(f"{group}: {n} images ({time.perf_counter() - start:.0f} s)", file=sys.stderr)

    table = make_generated_set(out, generator_weights=args.generator or MRI_T1.model_file("generator"),
                               vae_weights=args.vae or MRI_T1.model_file("vae"), reference_dir=args.reference,
                               seed=args.seed, progress=report)
    counts = table.groupby("group", sort=False).size().to_dict()
    print(f"{len(table)} images {counts}; wrote {_shown(out)} in {time.perf_counter() - start:.0f} s")
    return 0


def _head_training_setup(args: argparse.Namespace, left_out: set[str]):
    """The training config and reconstructor ``train-head`` / ``train-loko`` options describe
    (recipe options left out take :class:`core.detectors.head_training.HeadTrainingConfig`'s defaults)."""
    from dataclasses import replace

    import torch

    from core.detectors.autoencoder import AutoencoderDetector
    from core.detectors.diffusion import DiffusionDetector
    from core.detectors.head import HeadConfig, Reconstructor
    from core.detectors.head_training import HeadTrainingConfig
    from core.profiles import MRI_T1

    torch.set_num_threads(args.threads)
    inputs = tuple(k.strip() for k in args.inputs.split(","))
    config = HeadTrainingConfig(head=HeadConfig(inputs=inputs, seed=args.seed), steps=args.steps, seed=args.seed)
    recipe = {k: getattr(args, k) for k in ("crop", "border_crop_probability", "hard_negative_probability",
                                             "image_loss_weight", "pool_size", "refresh_every", "refresh_size")
              if getattr(args, k) is not None}
    config = replace(config, **recipe)
    if args.elastic_px is not None:
        config = replace(config, variation=replace(config.variation, elastic_px=args.elastic_px))
    if args.coarse_probability is not None:
        config = replace(config, variation=replace(config.variation, coarse_probability=args.coarse_probability))
    if left_out:
        config = replace(config, anomalies=replace(config.anomalies,
                                                   kinds=tuple(k for k in config.anomalies.kinds if k not in left_out)))
    reconstruct = Reconstructor(
        AutoencoderDetector.load(MRI_T1.model_file("autoencoder")) if "autoencoder" in inputs else None,
        DiffusionDetector.load(MRI_T1.model_file("diffusion")) if "diffusion" in inputs else None,
        diffusion_level=config.head.diffusion_level,
    )
    return config, reconstruct


def _report_head(out: Path, head) -> None:
    curve = head.metadata["validation_curve"]
    print(f"wrote {_shown(out)}: kept step {head.metadata['training']['kept_step']}, last validation "
          f"pixel AUROC {curve['pixel_auroc'][-1]}, Dice {curve['dice'][-1]}, image AUROC {curve['image_auroc'][-1]} "
          f"({head.metadata['training']['seconds']:.0f} s)")


def _cmd_train_head(args: argparse.Namespace) -> int:
    from core.detectors.head_training import train_head
    from core.profiles import MRI_T1
    from core.training_anomalies import TrainingKind

    left_out = {k.strip() for k in args.without.split(",") if k.strip()}
    known = {k.value for k in TrainingKind}
    if unknown := left_out - known:
        print(f"error: --without {sorted(unknown)}: not training corruptions ({', '.join(sorted(known))})",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    config, reconstruct = _head_training_setup(args, left_out)
    out = args.out or MRI_T1.model_file("head")
    checkpoint = args.checkpoint or Path("out") / "head_training" / f"{Path(out).stem}.ckpt"
    command = "python -m workflows.cli " + " ".join(a for a in sys.argv[1:] if a != "--resume")
    head = train_head(config, reconstruct, out, checkpoint=checkpoint, resume=args.resume,
                      log=lambda line: print(line, flush=True), command=command)
    _report_head(out, head)
    return 0


def _cmd_train_loko(args: argparse.Namespace) -> int:
    from core.detectors.head_training import train_head
    from core.benchmark.head_evaluation import LOKO_LEAVE_OUT, loko_head_name

    sets = sorted({tuple(sorted(v)) for v in LOKO_LEAVE_OUT.values()})
    runs = [("head_all", ())] + [(loko_head_name(s), s) for s in sets]
    command = "python -m workflows.cli " + " ".join(sys.argv[1:])
    for name, left_out in runs:
        out = args.out_dir / f"{name}.pt"
        if out.is_file():
            print(f"{_shown(out)} exists: skipped")
            continue
        config, reconstruct = _head_training_setup(args, set(left_out))
        print(f"training {name} (without {', '.join(left_out) or 'nothing'}) ...", flush=True)
        head = train_head(config, reconstruct, out, checkpoint=Path("out") / "head_training" / f"loko_{name}.ckpt",
                          resume=True, log=lambda line: print(line, flush=True), command=command)
        _report_head(out, head)
    return 0


def _cmd_calibrate_domain(args: argparse.Namespace) -> int:
    from workflows.domain_calibration import calibrate_domain
    from core.head_scoring import head_file
    from core.profiles import get_profile

    profile = get_profile(args.profile)
    head_path = head_file(profile)
    if not head_path.is_file():
        print(f"error: {head_path} is missing; make it with `python -m workflows.cli train-head`", file=sys.stderr)
        return EXIT_BAD_INPUT
    start = time.perf_counter()
    out = profile.domain_file()
    with _progress(None, "calibrate-domain") as bar:
        model = calibrate_domain(head_path, profile, out, n_images=args.n, volumes_per_subject=args.volumes,
                                 seed=args.seed, progress=lambda done, total: bar.update(1))
    print(f"{model.n_slices} in-domain slices; threshold {model.threshold:.2f} (their {model.quantile:.1%} quantile); "
          f"wrote {_shown(out)} in {time.perf_counter() - start:.0f} s")
    return 0


def _cmd_calibrate_head(args: argparse.Namespace) -> int:
    from core.detectors.head_training import available_head_subjects
    from core.head_scoring import HeadScorer, calibration_file_of, fit_head_calibration, head_file
    from core.profiles import MRI_T1

    start = time.perf_counter()
    head_path = args.head or head_file(MRI_T1)
    is_profile_head = Path(head_path).resolve() == head_file(MRI_T1).resolve()
    try:  # thresholds are not used while fitting: no calibration yet
        scorer = HeadScorer.from_files(head_path, None, profile=MRI_T1)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    n_volumes = max(args.volumes_per_subject + 1, 0) * len(available_head_subjects())
    with _progress(args.n + n_volumes, "calibrate-head") as bar:
        calibration = fit_head_calibration(scorer, n=args.n, seed=args.seed, false_alarm_rate=args.false_alarm_rate,
                                           volumes_per_subject=args.volumes_per_subject,
                                           head_name=Path(head_path).name, progress=bar.update)
    out = calibration_file_of(head_path, MRI_T1)
    calibration.save(out)
    volumes = ("no calibration volumes: Bonferroni" if calibration.volume_scores is None else
               f"from {len(calibration.volume_scores)} clean volumes")
    print(f"score window {calibration.score_window} (val image AUROC per window "
          f"{calibration.metadata['score_window_val_auroc']}); slice tau {calibration.slice_tau():.4f}; volume tau "
          f"{calibration.volume_tau(155):.6f} ({volumes}) at {calibration.false_alarm_rate:.0%}; wrote {_shown(out)} in "
          f"{time.perf_counter() - start:.0f} s")
    if not is_profile_head:  # an ablation head: its thresholds only (the dashboard never shows it)
        return 0
    from core.head_explain import fit_head_explainer_calibration, head_explainer_file
    from core.head_scoring import clean_variants

    start = time.perf_counter()
    channels = scorer.inputs(clean_variants("calib", args.n_explain, args.seed + 1))
    with _progress(3 * len(channels), "calibrate head explainers") as bar:
        explainers = fit_head_explainer_calibration(
            scorer.head, channels, window=calibration.score_window, progress=bar.update,
            metadata={"split": "calib", "seed": args.seed + 1, "head": _shown(head_path)})
    explainers.save(head_explainer_file(MRI_T1))
    print(f"wrote {_shown(head_explainer_file(MRI_T1))} in {time.perf_counter() - start:.0f} s")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from core.detectors.autoencoder import train_autoencoder
    from core.detectors.diffusion import train_diffusion
    from core.detectors.vae import train_vae
    from core.reference import load_split

    profile = _profile(args)
    train = load_split(args.reference, "train")
    val = load_split(args.reference, "val")
    val_real = val.images[val.augmentation == 0]
    trainer = {"autoencoder": train_autoencoder, "diffusion": train_diffusion, "vae": train_vae,
               "generator": train_diffusion}[args.model]
    defaults = TRAIN_DEFAULTS[args.model]
    if args.seed is None:
        args.seed = defaults.get("seed", 0)
    steps = args.steps or defaults["steps"]
    learning_rate = args.learning_rate or defaults["learning_rate"]
    out = args.out or profile.model_file(args.model)
    detector, history = trainer(
        train.images, val_images=val_real, steps=steps, batch_size=args.batch_size,
        learning_rate=learning_rate, seed=args.seed, augment_params=profile.augment,
    )
    manifest = json.loads((Path(args.reference) / "manifest.json").read_text())
    detector.save(
        out,
        metadata={
            "command": "python -m workflows.cli " + " ".join(sys.argv[1:]),
            "seed": args.seed,
            "steps": steps,
            "batch_size": args.batch_size,
            "learning_rate": learning_rate,
            "train_images": int(len(train.images)),
            "profile": profile.name,
            "augment_params": asdict(profile.augment),
            "reference_subjects": [s["name"] for s in manifest["subjects"]],
            "history": asdict(history),
        },
    )
    print(f"final train loss {history.train_loss[-1]:.4f}, val loss {history.val_loss[-1]:.4f} "
          f"after {steps} steps in {history.seconds:.0f} s; wrote {_shown(out)}")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from core.detectors.autoencoder import AutoencoderDetector
    from core.detectors.diffusion import DiffusionDetector
    from core.reference import load_split
    from core.scoring import fit_calibration

    profile = _profile(args)
    args.diffusion = args.diffusion or profile.model_file("diffusion")
    args.autoencoder = args.autoencoder or profile.model_file("autoencoder")
    args.out = args.out or profile.calibration_file()
    calib = load_split(args.reference, "calib")
    # Real slices only: the augmented copies (noise, bias field, gamma) score higher than real clean
    # scans, and a tau fitted on them flagged 0 % of real clean test slices instead of 5 %.
    calib_images = calib.images[calib.augmentation == 0]
    val = np.load(Path(args.validation) / "benchmark.npz")
    start = time.perf_counter()
    total = len(calib_images) + len(val["images"])
    with _progress(total, "calibrate") as bar:
        calibration = fit_calibration(
            DiffusionDetector.load(args.diffusion),
            AutoencoderDetector.load(args.autoencoder),
            calib_images,
            val["images"],
            val["labels"],
            false_alarm_rate=args.false_alarm_rate,
            batch_size=args.batch_size,
            progress=bar.update,
            metadata={
                "command": "python -m workflows.cli " + " ".join(sys.argv[1:]),
                "profile": profile.name,
                "reference": str(args.reference),
                "validation_benchmark": str(args.validation),
                "diffusion": _shown(args.diffusion),
                "autoencoder": _shown(args.autoencoder),
            },
        )
    calibration.save(args.out)
    aurocs = calibration.metadata["val_auroc_per_alpha"]
    print(f"alpha {calibration.alpha:.2f} (validation AUROC {aurocs[f'{calibration.alpha:.2f}']:.3f}; "
          f"alpha 0: {aurocs['0.00']:.3f}, alpha 1: {aurocs['1.00']:.3f}); "
          f"tau {calibration.tau(calibration.alpha):.3f} at {calibration.false_alarm_rate:.0%} false alarms")
    print(f"wrote {_shown(args.out)} in {time.perf_counter() - start:.0f} s")
    return 0


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="slice", file=sys.stderr)


def _cmd_score(args: argparse.Namespace) -> int:
    from workflows.score_folder import score_folder

    status = score_folder(
        args.input_dir, args.out, alpha=args.alpha, tau=args.tau, false_alarm_rate=args.false_alarm_rate,
        batch_size=args.batch_size, device=args.device, recursive=args.recursive, models_dir=args.models,
        explainer=args.explainer, shap_samples=args.shap_samples, method=args.method, reference_dir=args.reference,
        profile=args.profile, pixel_mm=args.pixel_mm, workers=args.workers, ray_address=args.ray_address,
        resume=args.resume,
    )
    if args.dicom_seg and status == 0:  # at least one file scored: scores.csv and masks/ are this run's
        from core.dicom_seg import SEG_FOLDER, write_score_segs

        written, messages = write_score_segs(args.input_dir, args.out)
        for message in messages:
            print(f"dicom-seg: {message}", file=sys.stderr)
        print(f"wrote {len(written)} DICOM-SEG file(s) to {args.out / SEG_FOLDER} (one per scored file whose mask "
              "is not empty)", file=sys.stderr)
    return status


def _cmd_report(args: argparse.Namespace) -> int:
    from workflows.report import make_report

    bar = None

    def progress(done: int, total: int, what: str) -> None:
        nonlocal bar
        if bar is None:
            bar = _progress(total, "report")
        bar.set_postfix_str(what[:40], refresh=False)
        bar.update(done - bar.n)

    try:
        return make_report(args.generated, args.out, real_dir=args.real, profile=args.profile, models_dir=args.models,
                           pixel_mm=args.pixel_mm, seed=args.seed, workers=args.workers,
                           ray_address=args.ray_address, resume=args.resume, progress=progress)
    finally:
        if bar is not None:
            bar.close()


def _load_scorer(args: argparse.Namespace):
    from core.scoring import Scorer

    return Scorer.from_folder(args.models, profile=_profile(args), device=args.device, alpha=args.alpha,
                              false_alarm_rate=args.false_alarm_rate, batch_size=args.batch_size)


def _cmd_calibrate_explainers(args: argparse.Namespace) -> int:
    from core.detectors.vae import VAE
    from core.explain import AnomalyScoreModel, ExplainerSettings, fit_explainer_calibration
    from core.reference import load_split

    scorer = _load_scorer(args)
    args.out = args.out or scorer.profile.explainer_file(args.models)
    vae = VAE.load(scorer.profile.model_file("vae", args.models))  # latent_ig's generator
    calib = load_split(args.reference, "calib")
    calib_images = calib.images[calib.augmentation == 0]  # real slices, as the score's calibration
    settings = ExplainerSettings(shap_samples=args.shap_samples, gradcam_layer=args.gradcam_layer)
    start = time.perf_counter()
    with _progress(4 * len(calib_images), "calibrate-explainers") as bar:
        calibration = fit_explainer_calibration(
            AnomalyScoreModel(scorer), calib_images, settings=settings,
            reconstruct=scorer.autoencoder.reconstruct, latent_model=vae, progress=bar.update,
            metadata={"command": "python -m workflows.cli " + " ".join(sys.argv[1:]), "profile": scorer.profile.name,
                      "reference": str(args.reference)},
        )
    calibration.save(args.out)
    for name, seconds in calibration.metadata["seconds_per_slice"].items():
        print(f"{name}: {seconds * 1e3:.0f} ms per slice")
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s")
    return 0


def _explainers_for(args: argparse.Namespace, scorer) -> list:
    from core.explain import Explainer, ExplainerName

    names = list(ExplainerName) if args.explainers == "all" else [
        ExplainerName(n.strip()) for n in args.explainers.split(",") if n.strip()]
    path = scorer.profile.explainer_file(args.models)
    return [Explainer.load(scorer, name, path, shap_samples=args.shap_samples) for name in names]


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from core.benchmark.evaluation import clean_test_slices, load_benchmark, run_evaluation

    profile = _profile(args)  # always: it fills --benchmark and --reference left unset (an --out given
    args.out = args.out or profile.evaluation_dir  # once skipped it, and `evaluate --methods` read None)
    if args.methods:
        return _compare_methods(args)
    scorer = _load_scorer(args)
    bench = load_benchmark(args.benchmark, small=args.small)
    clean_test = clean_test_slices(args.reference)
    explainers = _explainers_for(args, scorer) if args.explainers else None
    n_explain = len(explainers or []) * (int(bench["labels"].sum()) + len(clean_test))
    context = {"command": "`python -m workflows.cli " + " ".join(sys.argv[1:]) + "`",
               "benchmark file": str(args.benchmark), "reference": str(args.reference)}
    with _progress(len(bench["images"]) + len(clean_test) + n_explain, "evaluate") as bar:
        run = run_evaluation(scorer, bench, clean_test, args.out, explainers=explainers, context=context,
                             progress=bar.update)
    print(run.summary.to_string(float_format=lambda v: f"{v:.3f}"))
    print()
    print(run.per_kind_auroc.to_string(float_format=lambda v: f"{v:.3f}"))
    if run.explainer_summary is not None:
        print()
        print(run.explainer_summary.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {args.out / 'report.md'} in {run.seconds:.0f} s")
    return 0


def _cmd_make_realistic_benchmark(args: argparse.Namespace) -> int:
    from core.benchmark.realistic import make_realistic_benchmark, make_unseen_volumes

    start = time.perf_counter()
    pixel_mm = None
    if args.pixel_mm:
        if (pair := _two_numbers(args.pixel_mm)) is None:
            print(f"error: --pixel-mm takes LOW,HIGH in mm (e.g. 1,2), not {args.pixel_mm!r}", file=sys.stderr)
            return EXIT_BAD_INPUT
        low, high = pair
        if not 0.5 <= low <= high <= 5.0:
            print(f"error: --pixel-mm {args.pixel_mm}: LOW <= HIGH, both from 0.5 to 5 mm", file=sys.stderr)
            return EXIT_BAD_INPUT
        pixel_mm = (low, high)
    table = make_realistic_benchmark(args.out, n_seen=args.n_seen, n_unseen=args.n_unseen, seed=args.seed,
                                     split=args.split, pixel_mm=pixel_mm)
    volumes = make_unseen_volumes(args.out, n=args.n_volumes, seed=args.seed + UNSEEN_VOLUMES_SEED_OFFSET)
    print(table.groupby(["source", "label"]).size().to_string())
    print(f"wrote {len(table)} images and {len(volumes)} clean volumes to {_shown(args.out)} in "
          f"{time.perf_counter() - start:.0f} s")
    return 0


def _cmd_evaluate_realistic(args: argparse.Namespace) -> int:
    import pandas as pd

    from core.errors import InputError
    from core.benchmark.head_evaluation import false_alarms, run_method, summarise, write_report
    from core.benchmark.realistic import read_labels
    from core.head_scoring import HeadScorer, calibration_file_of
    from core.profiles import MRI_T1
    from core.tables import markdown_table

    try:
        table = read_labels(args.benchmark)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    head = HeadScorer.load()
    scorers = {"head": head}
    if args.seed_row:  # the seed's alpha-combined score; an image-only head does not load the seed's models
        from core.scoring import Scorer

        scorers["seed"] = head.seed if head.seed is not None else Scorer.from_folder(None, profile=MRI_T1)
    for path in [Path(p) for p in args.heads.split(",") if p]:
        try:
            ablation = HeadScorer.from_files(path, calibration_file_of(path, MRI_T1), profile=MRI_T1)
        except FileNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
        scorers[f"head: {' + '.join(ablation.head.config.inputs)} ({path.stem})"] = ablation
    for name in [m for m in args.baselines.split(",") if m]:
        from core.baselines.scorer import BaselineScorer

        scorers[name] = BaselineScorer.fit(name, args.reference)
    start = time.perf_counter()
    runs = []
    for name, scorer in scorers.items():
        with _progress(len(table), name) as bar:
            runs.append(run_method(name, scorer, args.benchmark, table, progress=bar.update))
    tables = summarise(runs, table, args.benchmark)
    volume_paths = sorted((args.benchmark / "volumes").glob("*.nii.gz"))
    volume_rows = []
    for path in volume_paths:
        volume = load_volume(path)
        t0 = time.perf_counter()
        result = head.score_volume(volume)
        volume_rows.append({"file": path.name, "flag": result.flag, "tau": result.tau, "score": result.score,
                            "scored_slices": int(np.isfinite(result.slice_scores).sum()),
                            "flagged_slices": len(result.flagged_slices), "seconds": time.perf_counter() - t0})
    volumes = pd.DataFrame(volume_rows)
    write_report(args.out, {**tables, "unseen_volumes": volumes})
    lines = [f"# Realistic benchmark ({len(table)} images; `python -m workflows.cli evaluate-realistic`)", ""]
    for key in ("overall", "by_source", "by_storage", "by_kind", "by_severity"):
        if key in tables:  # by_storage: a benchmark stored at varied pixel sizes only
            lines += [f"## {key}", "", markdown_table(tables[key].set_index("method")), ""]
    if len(volumes):
        rate, low, high = false_alarms(volumes["flag"].to_numpy())
        lines += ["## unseen-subject clean volumes", "",
                  f"{int(volumes['flag'].sum())} of {len(volumes)} flagged ({rate:.1%}, 95 % CI {low:.1%}-{high:.1%}); "
                  f"median {volumes['seconds'].median():.1f} s per volume of {int(volumes['scored_slices'].median())} "
                  "scored slices", ""]
    (args.out / "report.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {_shown(args.out)} in {time.perf_counter() - start:.0f} s")
    return 0


def _cmd_evaluate_loko(args: argparse.Namespace) -> int:
    from core.errors import InputError
    from core.benchmark.head_evaluation import loko_table, run_method
    from core.head_scoring import HeadScorer
    from core.profiles import MRI_T1
    from core.benchmark.realistic import read_labels
    from core.tables import markdown_table

    heads = sorted(args.heads_dir.glob("head_*.pt"))
    try:
        table = read_labels(args.benchmark)
        if not any(h.stem == "head_all" for h in heads):
            raise InputError(f"{args.heads_dir}/head_all.pt not found: train the heads without each kind first "
                             "(`python -m workflows.cli train-loko`)")
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    start = time.perf_counter()
    scores = {}
    for path in heads:  # image AUROC needs no threshold: each head scores with its configured window
        scorer = HeadScorer.from_files(path, None, profile=MRI_T1)
        with _progress(len(table), path.stem) as bar:
            scores[path.stem] = run_method(path.stem, scorer, args.benchmark, table, progress=bar.update).scores
    frame = loko_table(scores, scores.pop("head_all"), table)
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "loko.csv", index=False)
    text = (f"# Leave-one-kind-out ({len(table)} images of {_shown(args.benchmark)}; heads in {_shown(args.heads_dir)})\n\n"
            + markdown_table(frame.set_index("kind")) + "\n")
    (args.out / "loko.md").write_text(text)
    print(text)
    print(f"wrote {_shown(args.out)} in {time.perf_counter() - start:.0f} s")
    return 0


def _compare_methods(args: argparse.Namespace) -> int:
    from workflows.comparison import method_names, run_comparison
    from core.benchmark.evaluation import load_benchmark

    try:
        names = method_names(args.methods)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    bench = load_benchmark(args.benchmark, small=args.small)
    context = {"command": "`python -m workflows.cli " + " ".join(sys.argv[1:]) + "`",
               "benchmark file": str(args.benchmark), "reference": str(args.reference)}
    start = time.perf_counter()
    with _progress(len(bench["images"]) * len(names), "methods") as bar:
        tables = run_comparison(names, bench, args.reference, args.out, scorer=_load_scorer(args) if any(
            n.startswith(SAFEGEN_METHOD) for n in names) else None, context=context, progress=bar.update)
    print(tables["methods"].drop(columns=["title"]).round(3).to_string())
    print(f"wrote {args.out}/methods.md in {time.perf_counter() - start:.0f} s")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from workflows.speed import run_bench

    scorer = _load_scorer(args)
    rows = run_bench(scorer, args.validation, repeats=args.repeats, ddpm_slices=args.ddpm_slices)
    width = max(len(what) for what, _ in rows)
    for what, figure in rows:
        print(f"{what:<{width}}  {figure}")
    return 0


def _profile_name(value: str) -> str:
    """argparse type of ``--profile``: a built-in or user profile name, or a user profile's folder."""
    from core.profiles import get_profile

    try:
        get_profile(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def _add_profile_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", type=_profile_name, default="mri_t1",
                        help="profile: its reference data, weights and calibration (mri_t1 (default), ct_head, "
                             "or a user profile's name or folder from train-profile)")


def _add_scorer_options(parser: argparse.ArgumentParser) -> None:
    _add_profile_option(parser)
    parser.add_argument("--models", type=Path, default=None,
                        help="folder with weights and calibration (default: the profile's, models/ for built-ins)")
    parser.add_argument("--alpha", type=float, help="weight of the diffusion map (default: from calibration)")
    parser.add_argument("--false-alarm-rate", type=float, help="tau flags this share of clean slices")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")


def _explainer_names():
    from core.explain import ExplainerName

    return list(ExplainerName)


def _method_names() -> list[str]:
    from core.baselines import method_choices

    return method_choices()



def _add_head_recipe_options(parser: argparse.ArgumentParser, *, steps: int,
                             inputs: str = "image,autoencoder,diffusion") -> None:
    parser.add_argument("--inputs", default=inputs,
                        help="input channels, comma-separated: image, autoencoder, diffusion")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    # Recipe settings; left out, each takes core.detectors.head_training.HeadTrainingConfig's default.
    parser.add_argument("--crop", type=int, help="training crop side (pixels = mm)")
    parser.add_argument("--border-crop-probability", type=float, help="share of crops that touch the slice's edge")
    parser.add_argument("--hard-negative-probability", type=float,
                        help="share of clean crops centred on the hottest pixel of the head being trained (at refreshes)")
    parser.add_argument("--image-loss-weight", type=float,
                        help="weight of the crop-level loss on the slice score's logit (0: pixel loss only)")
    parser.add_argument("--pool-size", type=int, help="ready training crops")
    parser.add_argument("--refresh-every", type=int, help="steps between pool refreshes")
    parser.add_argument("--refresh-size", type=int, help="crops replaced at each refresh")
    parser.add_argument("--elastic-px", type=float,
                        help="peak smooth elastic displacement of the training slices (normal anatomical variation)")
    parser.add_argument("--coarse-probability", type=float,
                        help="share of training slices whose true pixels are 1.2-2.2 mm, resampled back to 1 mm "
                             "(normal variation: coarse scans and generator outputs); default 0")


def _add_engine_options(parser: argparse.ArgumentParser, *, scores: str) -> None:
    """``--workers``, ``--ray-address``, ``--resume``: how a folder's files are scored (workflows.distributed)."""
    parser.add_argument("--workers", type=int, default=1,
                        help="score in this many local processes, the models loaded once in each (default 1: in this "
                             "one); with --ray-address local, the CPUs of that Ray")
    parser.add_argument("--ray-address", default=None,
                        help="shard the files over a Ray cluster: auto (the running one), HOST:PORT or ray://..., or "
                             "local (a Ray started here with --workers CPUs); OUT must be a folder every node shares "
                             "(README, Screening at scale)")
    parser.add_argument("--resume", action="store_true",
                        help=f"keep the rows of {scores} (a cut run writes the rows it finished, in order) whose "
                             "file was scored and has its heatmap and mask; score the rest")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m workflows.cli", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="load a scan and print a summary")
    info.add_argument("path", type=Path, help="NIfTI, DICOM file or folder, zip of DICOM, PNG or JPEG")
    info.add_argument("--modality", choices=[m.value for m in Modality], help="override the detected modality")
    info.add_argument("--max-file-mb", type=float, default=1024.0, help="refuse larger files (default 1024)")
    info.add_argument("--max-decoded-mb", type=float, default=MAX_DECODED_BYTES / 2**20,
                      help="refuse files that decode to more, as read or as 32-bit floats "
                           f"(default {MAX_DECODED_BYTES // 2**20})")
    info.set_defaults(func=_cmd_info)

    ref = sub.add_parser("build-reference", help="slices of real normal anatomy, split and augmented")
    _add_profile_option(ref)
    ref.add_argument("--out", type=Path, help="default: the profile's (data/reference for mri_t1)")
    ref.add_argument("--seed", type=int, default=0)
    ref.add_argument("--augment", type=int, default=4, help="augmented copies per real slice (default 4)")
    ref.set_defaults(func=_cmd_build_reference)

    bench = sub.add_parser("make-benchmark", help="simulated artifacts with exact masks")
    bench.add_argument("--reference", type=Path, default=Path("data/reference"))
    bench.add_argument("--split", default="test", help="reference split to corrupt (default test)")
    bench.add_argument("--out", type=Path, default=Path("data/benchmark"))
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--n-per", type=int, default=2, help="images per artifact kind and severity")
    bench.set_defaults(func=_cmd_make_benchmark)

    own = sub.add_parser("train-profile", help="train a profile on a folder of your own real, normal images (CPU)")
    own.add_argument("name", help="profile name: lower-case letters, digits and _")
    own.add_argument("--images", type=Path, required=True,
                     help="folder of real normal images: 3-D NIfTI volumes (one subject each) and/or 2-D slices")
    own.add_argument("--modality", choices=[m.value for m in Modality],
                     help="override the modality the files carry (e.g. MR for PNG slices of MR scans)")
    own.add_argument("--window", help="CT only: the HU window LEVEL,WIDTH (default 40,80, the brain window)")
    own.add_argument("--out", type=Path, help="the profile's folder (default profiles/<name>)")
    own.add_argument("--steps", type=int, help="optimiser steps per model (default 1500)")
    own.add_argument("--augment", type=int, default=4, help="augmented copies per real slice (default 4)")
    own.add_argument("--n-per", type=int, default=2,
                     help="benchmark images per artifact kind and severity (default 2: 54 with artifacts)")
    own.add_argument("--shap-samples", type=int, default=200, help="KernelSHAP coalitions when calibrating explainers")
    own.add_argument("--seed", type=int, default=0)
    own.set_defaults(func=_cmd_train_profile)

    generated = sub.add_parser("make-generated-set",
                               help="sample the demo's generated set from the trained DDPM generator and the VAE")
    generated.add_argument("--reference", type=Path, default=Path("data/reference"))
    generated.add_argument("--generator", type=Path, default=None, help="default models/generator_mri_t1.pt")
    generated.add_argument("--vae", type=Path, default=None, help="default models/vae_mri_t1.pt")
    generated.add_argument("--out", type=Path, default=None, help="default demo/generated_mri_t1")
    generated.add_argument("--seed", type=int, default=GENERATED_SET_SEED)
    generated.set_defaults(func=_cmd_make_generated_set)

    turing = sub.add_parser("make-turing-set", help="real and diffusion-model (SDEdit) slices for a visual Turing test")
    turing.add_argument("--reference", type=Path, default=Path("data/reference"))
    turing.add_argument("--split", default="test")
    turing.add_argument("--out", type=Path, default=Path("data/turing"))
    turing.add_argument("--n", type=int, default=8, help="real images (and as many synthetic ones)")
    turing.add_argument("--seed", type=int, default=TURING_SEED)
    turing.add_argument("--levels", default="150,500", help="DDPM timesteps the synthetic images start from")
    turing.set_defaults(func=_cmd_make_turing_set)

    head = sub.add_parser("train-head", help="train the anomaly-segmentation head (CPU, seeded, resumable)")
    _add_head_recipe_options(head, steps=14000)
    head.add_argument("--out", type=Path, default=None, help="default models/head_mri_t1.pt")
    head.add_argument("--checkpoint", type=Path, default=None, help="default out/head_training/<out name>.ckpt")
    head.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    head.add_argument("--without", default="",
                      help="training corruptions to leave out, comma-separated (see train-loko)")
    head.set_defaults(func=_cmd_train_head)

    loko = sub.add_parser("train-loko", help="the leave-one-kind-out heads: one without the training corruptions "
                                             "closest to each artifact kind, and one with all (same recipe)")
    _add_head_recipe_options(loko, steps=3000, inputs="image")
    loko.add_argument("--out-dir", type=Path, default=Path("models/loko"),
                      help="where the heads go (a head already there is skipped; a stopped one resumes)")
    loko.set_defaults(func=_cmd_train_loko)


    cal_head = sub.add_parser("calibrate-head", help="the head's thresholds from clean calib slices and volumes under variation")
    cal_head.add_argument("--n", type=int, default=2000, help="clean calibration slices (each a fresh variation)")
    cal_head.add_argument("--n-explain", type=int, default=40,
                          help="clean slices that put the explainers on the probability scale")
    cal_head.add_argument("--seed", type=int, default=7)
    cal_head.add_argument("--false-alarm-rate", type=float, default=0.05)
    cal_head.add_argument("--volumes-per-subject", type=int, default=15,
                          help="varied clean volumes of each training subject (and each as it installs) for the "
                               "volume threshold; -1: none, volumes use Bonferroni over slices")
    cal_head.add_argument("--head", type=Path, default=None,
                          help="a head file other than the profile's (an ablation head): its calibration is "
                               "written beside it as NAME.calibration.json, no explainers")
    cal_head.set_defaults(func=_cmd_calibrate_head)

    domain = sub.add_parser("calibrate-domain", help="the appearance check of the profile's head (models/domain_*.npz)")
    domain.add_argument("--profile", default="mri_t1")
    domain.add_argument("--n", type=int, default=1200, help="2-D images of the training split under normal variation")
    domain.add_argument("--volumes", type=int, default=2, help="varied volumes per training subject (plus each as it is)")
    domain.add_argument("--seed", type=int, default=0)
    domain.set_defaults(func=_cmd_calibrate_domain)

    train = sub.add_parser("train", help="train a detector on real normal slices (CPU, seeded)")
    train.add_argument("model", choices=sorted(TRAIN_DEFAULTS))
    _add_profile_option(train)
    train.add_argument("--reference", type=Path, help="reference slices (default: the profile's)")
    train.add_argument("--out", type=Path, help="weights file (default models/<model>_<profile>.pt)")
    train.add_argument("--steps", type=int, help="optimiser steps (1500 for every model)")
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--learning-rate", type=float,
                       help="peak learning rate (autoencoder 1e-3, diffusion and generator 5e-4, vae 1e-3)")
    train.add_argument("--seed", type=int, help="default 0 (generator: 1)")
    train.set_defaults(func=_cmd_train)

    cal = sub.add_parser("calibrate", help="fit calibration on real calib slices; choose alpha on validation")
    _add_profile_option(cal)
    cal.add_argument("--reference", type=Path, help="reference slices (default: the profile's)")
    cal.add_argument("--validation", type=Path,
                     help="benchmark built from the val split (make-benchmark --split val; default: the profile's)")
    cal.add_argument("--diffusion", type=Path, help="default models/diffusion_<profile>.pt")
    cal.add_argument("--autoencoder", type=Path, help="default models/autoencoder_<profile>.pt")
    cal.add_argument("--out", type=Path, help="default models/calibration_<profile>.json")
    cal.add_argument("--false-alarm-rate", type=float, default=0.05,
                     help="share of clean slices flagged at the default tau (default 0.05)")
    cal.add_argument("--batch-size", type=int, default=16)
    cal.set_defaults(func=_cmd_calibrate)

    score = sub.add_parser("score", help="score every image in a folder (scores.csv, masks/, heatmaps/)")
    score.add_argument("input_dir", type=Path, help="folder of scans: " + ", ".join(ACCEPTED_SUFFIXES))
    score.add_argument("--out", type=Path, required=True, help="output folder")
    score.add_argument("--alpha", type=float, help="weight of the diffusion map (default: from calibration)")
    score.add_argument("--tau", type=float, help="tolerance in calibrated units (default: at the false-alarm rate)")
    score.add_argument("--false-alarm-rate", type=float, help="set tau so this share of clean slices is flagged")
    score.add_argument("--batch-size", type=int, default=16, help="slices per model call (default 16)")
    score.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    score.add_argument("--recursive", action="store_true", help="also score files in sub-folders")
    score.add_argument("--models", type=Path, default=None, help="folder with the weights and calibration")
    score.add_argument("--explainer", choices=[e.value for e in _explainer_names()],
                       help="explainer of the heatmaps and masks (default: the best Dice in the README's table)")
    score.add_argument("--shap-samples", type=int, help="KernelSHAP coalitions per slice (default 200)")
    score.add_argument("--method", default=SAFEGEN_METHOD, choices=_method_names(),
                       help="detector: safegen (default) or a baseline, fitted on the reference slices first "
                            "(README, Baselines side by side)")
    score.add_argument("--profile", default="auto",
                       help="profile whose models score the files: auto (default: from each file's modality, "
                            "brain MRI T1 when none fits), mri_t1, ct_head, or a user profile's name or folder")
    score.add_argument("--reference", type=Path, default=None,
                       help="reference slices a baseline is fitted on (default data/reference; built if missing)")
    score.add_argument("--pixel-mm", type=float, default=None,
                       help="pixel size in mm of 2-D images that state none (PNG, JPEG, DICOM without PixelSpacing; "
                            "default: read at 1 mm, with a warning). A generator's 128-px slices of a whole brain "
                            "are about 1.8 mm. True millimetres for areas and the field-of-view check; the current "
                            "detector learned 1 mm pixels and flags far more clean pictures read at a coarser true "
                            "size (README, The detector)")
    score.add_argument("--dicom-seg", action="store_true",
                       help="also write dicom_seg/<stem>.seg.dcm, a DICOM Segmentation of the mask, for every scored "
                            "file whose mask is not empty; it references a DICOM input itself, and for any other "
                            "input a derived DICOM copy written beside it in dicom_seg/<stem>_images/")
    _add_engine_options(score, scores="OUT/scores.csv")
    score.set_defaults(func=_cmd_score)

    rep = sub.add_parser("report", help="a generator's report card: fidelity, coverage, diversity, copies, artifacts")
    rep.add_argument("generated", type=Path,
                     help="folder of generated 2-D images (" + ", ".join(ACCEPTED_SUFFIXES) + "); groups from its "
                          "manifest.csv's group column when there is one")
    rep.add_argument("--real", type=Path, default=None,
                     help="folder of real images to compare with and search for copies (default: the profile's "
                          "reference: its train split, the copy threshold from its val and calib splits)")
    rep.add_argument("--out", type=Path, default=Path("out/report"), help="output folder (default out/report)")
    _add_profile_option(rep)
    rep.add_argument("--models", type=Path, default=None, help="folder with the weights (default: the profile's)")
    rep.add_argument("--pixel-mm", type=float, default=None,
                     help="pixel size in mm of 2-D images that state none, for the artifact score (default 1 mm)")
    rep.add_argument("--seed", type=int, default=0, help="seed of KID's subsets and the MS-SSIM pairs (default 0)")
    _add_engine_options(rep, scores="OUT/screening/scores.csv")
    rep.set_defaults(func=_cmd_report)

    ev = sub.add_parser("evaluate", help="AUROC, F1, Dice per variant, kind and severity; report and plots")
    ev.add_argument("--benchmark", type=Path, help="default: the profile's (data/benchmark for mri_t1)")
    ev.add_argument("--reference", type=Path, help="default: the profile's (data/reference for mri_t1)")
    ev.add_argument("--out", type=Path, help="default: the profile's (out/evaluation for mri_t1)")
    ev.add_argument("--explainers", default="all",
                    help="comma-separated explainers to evaluate, 'all' (default) or '' for none")
    ev.add_argument("--shap-samples", type=int, default=200, help="KernelSHAP coalitions per slice (default 200)")
    ev.add_argument("--small", action="store_true",
                    help="a quick run: one artifact image per kind and severity and as many clean ones")
    ev.add_argument("--methods", default="",
                    help="compare SAFEGEN with the baselines instead: 'all' or a comma list (safegen, "
                         "safegen_autoencoder, safegen_diffusion, phanes, padim, patchcore, mriqc_iqm, "
                         "spectral, spectral_local); writes methods.md / methods*.csv to --out")
    _add_scorer_options(ev)
    ev.set_defaults(func=_cmd_evaluate)

    rb = sub.add_parser("make-realistic-benchmark", help="real slices under normal variation, half with an artifact")
    rb.add_argument("--out", type=Path, default=Path("data/realistic_benchmark"))
    rb.add_argument("--n-seen", type=int, default=216, help="images from the training subjects' test split")
    rb.add_argument("--n-unseen", type=int, default=216, help="images from the held-out subject")
    rb.add_argument("--pixel-mm", default=None,
                    help="LOW,HIGH: store each image at a pixel size drawn from this range (PNGs do not state it; "
                         "NIfTIs do); default: every image at 1 mm")
    rb.add_argument("--n-volumes", type=int, default=12, help="clean varied volumes of the held-out subject")
    rb.add_argument("--seed", type=int, default=REALISTIC_SEED)
    rb.add_argument("--split", default="test", choices=["test", "val"],
                    help="the training subjects' split the seen images come from: test (the reported benchmark) or "
                         "val (a realistic validation set for choices between heads: with --n-unseen 0 --n-volumes 0)")
    rb.set_defaults(func=_cmd_make_realistic_benchmark)

    er = sub.add_parser("evaluate-realistic", help="the head, the seed's scores and baselines on the realistic benchmark")
    er.add_argument("--benchmark", type=Path, default=Path("data/realistic_benchmark"))
    er.add_argument("--out", type=Path, default=Path("out/evaluation_realistic"))
    er.add_argument("--baselines", default="", help="comma list of baselines (score --method names) to add")
    er.add_argument("--reference", type=Path, default=Path("data/reference"), help="the baselines' reference slices")
    er.add_argument("--no-seed-row", dest="seed_row", action="store_false",
                    help="leave out the seed's alpha-combined score (1.7 s an image; its rows do not change with the head)")
    er.add_argument("--heads", default="",
                    help="comma list of other head files to add as rows (ablations: train-head --inputs ... --out F, "
                         "then calibrate-head --head F)")
    er.set_defaults(func=_cmd_evaluate_realistic)

    lk = sub.add_parser("evaluate-loko", help="leave-one-kind-out table of the train-loko heads on the realistic benchmark")
    lk.add_argument("--benchmark", type=Path, default=Path("data/realistic_benchmark"))
    lk.add_argument("--heads-dir", type=Path, default=Path("models/loko"))
    lk.add_argument("--out", type=Path, default=Path("out/evaluation_loko"))
    lk.set_defaults(func=_cmd_evaluate_loko)

    cx = sub.add_parser("calibrate-explainers", help="quantile-match every explainer to the score's scale")
    cx.add_argument("--reference", type=Path, help="default: the profile's (data/reference for mri_t1)")
    cx.add_argument("--out", type=Path, help="default models/explainers_<profile>.json")
    cx.add_argument("--shap-samples", type=int, default=200, help="KernelSHAP coalitions per slice (default 200)")
    cx.add_argument("--gradcam-layer", default="autoencoder.decode.decode_1",
                    help="layer of the score model for Grad-CAM (default autoencoder.decode.decode_1)")
    _add_scorer_options(cx)
    cx.set_defaults(func=_cmd_calibrate_explainers)

    timing = sub.add_parser("bench", help="timings on this machine")
    timing.add_argument("--validation", type=Path, help="default: the profile's (data/benchmark_val for mri_t1)")
    timing.add_argument("--repeats", type=int, default=5)
    timing.add_argument("--ddpm-slices", type=int, default=16, help="slices for the DDIM-vs-DDPM comparison")
    _add_scorer_options(timing)
    timing.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
