"""Training the segmentation head (:mod:`core.detectors.head`) on two CPU cores.

Recipe (``python -m workflows.cli train head``, seeded, resumable):

1. **Real normal slices.** The training subjects (:data:`HEAD_SUBJECTS`: MNI152 and Colin27 with
   and without skull) are loaded, resampled to 1 mm, scaled by their own tissue percentiles, and
   their axial slices dealt to the reference splits (:func:`core.reference.assign_splits`, by axial
   index, so Colin27 with and without skull split alike). The held-out subject
   (:data:`UNSEEN_SUBJECT`) is never read here.
2. **Samples.** A ``train`` slice gets normal variation (:func:`core.variation.vary`), a training
   corruption with probability 0.6 (:func:`core.training_anomalies.random_anomaly`, donor slices
   from the same split), 8-bit storage half of the time, and the head's normalisation
   (:func:`core.preprocess.robust_normalize`, its upper scale jittered by +-15 % as a volume's
   statistics would shift it). The reconstructions (:class:`core.detectors.head.Reconstructor`)
   are made from the **whole** varied slice, exactly as at scoring time.
3. **A pool.** The reconstructions (a DDIM pass per slice) cost far more than a training step, so
   ``pool_size`` samples are made once (their ``crop``-sized window around the label, or a random
   one for clean samples), then every step draws a batch from the pool with random flips and
   90-degree turns. ``refresh_every`` steps, ``refresh_size`` samples are replaced by new ones;
   with ``hard_negative_probability`` > 0, that share of the new clean samples is cropped around the
   pixel where the head being trained is most wrong (its hottest), so the false alarms it makes on
   normal anatomy (orbits, skull edges, anatomy cut by the field of view) are what it sees next.
4. **Loss and schedule.** ``DiceCELoss(sigmoid=True, batch=True)``, Adam, cosine decay. With
   ``image_loss_weight`` > 0 a crop-level term is added: binary cross-entropy of
   :func:`core.detectors.head.image_logit` (the slice score's counterpart on logits) against "the crop
   holds a label". The pixel loss barely notices one hot spot on a clean crop; the slice score is
   that hot spot, so this term trains what the image-level decision uses.
5. **Validation on held-out synthetic data.** Every ``validate_every`` steps the head scores a
   fixed set of whole ``val``-split slices (made the same way, other seed): pixel AUROC, Dice at
   probability 0.5 on the corrupted ones, and image AUROC of the slice score. The curve is kept in
   the sidecar; the step with the best validation image AUROC + Dice is what is saved.

A checkpoint (weights, optimiser, pool, random state, history) is written every
``checkpoint_seconds`` so ``--resume`` continues a stopped run where it was.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss
from torch.nn.functional import binary_cross_entropy_with_logits
from scipy import ndimage

from core.detectors.head import HeadConfig, HeadDetector, Reconstructor, build_head, image_logit, slice_score
from core.io import load_volume
from core.metrics import dice, image_auroc, pixel_auroc
from core.preprocess import foreground_mask, robust_normalize, robust_scale
from core.profiles import KNOWN_SUBJECTS, ReferenceSubject
from core.reference import assign_splits
from core.training_anomalies import AnomalyParams, random_anomaly
from core.types import Modality
from core.variation import VariationParams, quantise, vary, vary_volume

COLIN_WITH_SKULL = ReferenceSubject(
    name="colin27_skull",
    path=Path("/usr/share/mricron/templates/ch2.nii.gz"),
    description="Colin27 T1 (27 averaged scans of one adult) with skull and scalp, 1 mm",
    provenance="apt: mricron-data",
    person="colin27",
)
HEAD_SUBJECTS: tuple[ReferenceSubject, ...] = (*KNOWN_SUBJECTS, COLIN_WITH_SKULL)

# The held-out subject: a single real T1 acquisition (not an average), with skull, from a scanner
# none of the training subjects comes from, at 2 x 2 x 3 mm. Never used for training, calibration
# or any choice; its figures are reported on their own.
UNSEEN_SUBJECT = ReferenceSubject(
    name="itk_t1",
    path=Path("/usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1UCharRaw.nii.gz"),
    description="ITK example T1 head scan (one real acquisition, with skull), 128 x 128 x 62 at 2 x 2 x 3 mm",
    provenance="apt: insighttoolkit5-examples",
)

SPACING_MM = 1.0
MIN_TISSUE_FRACTION = 0.25


@dataclass
class SubjectStack:
    """One subject's usable axial display slices at 1 mm, tissue scaled to ~[0, 1], and their splits."""

    name: str
    slices: list[np.ndarray]
    split: np.ndarray  # per slice: "train", "val", "calib", "test" or "" (buffer)


def resample_inplane(array: np.ndarray, spacing: tuple[float, ...], target: float = SPACING_MM) -> np.ndarray:
    """A RAS volume (or 2-D image) resampled to ``target`` mm in-plane (axes 0, 1), slices kept."""
    zoom = [float(s) / target for s in spacing[:2]] + [1.0] * (array.ndim - 2)
    if np.allclose(zoom, 1.0, atol=0.02):
        return np.asarray(array, dtype=np.float32)
    return ndimage.zoom(np.asarray(array, dtype=np.float32), zoom, order=1)


@functools.cache
def load_subject(subject: ReferenceSubject) -> SubjectStack:
    """Read and prepare one subject (see the module docstring, step 1); read once per process
    (the stack is shared: do not modify it)."""
    volume = load_volume(subject.path, modality=Modality.MR)
    array = resample_inplane(volume.array, volume.spacing)
    low, high = robust_scale(array, Modality.MR)
    scaled = (array - low) / (high - low)
    tissue = foreground_mask(array, Modality.MR).sum(axis=(0, 1))
    labels = assign_splits(array.shape[2])
    keep = np.flatnonzero(tissue >= MIN_TISSUE_FRACTION * tissue.max())
    slices = [np.ascontiguousarray(scaled[:, :, k][::-1, ::-1].T, dtype=np.float32) for k in keep]
    return SubjectStack(subject.name, slices, labels[keep])


def available_head_subjects() -> list[ReferenceSubject]:
    return [s for s in HEAD_SUBJECTS if s.path is not None and Path(s.path).is_file()]


def clean_training_volumes(per_subject: int, rng: np.random.Generator,
                           params: VariationParams = VariationParams()):
    """Clean whole volumes of the training subjects, as a scorer would get them: each subject as it
    installs (tissue's 99th percentile at 1), then ``per_subject`` draws of volume-wide normal
    variation (:func:`core.variation.vary_volume`) on its own grid. Yields ``(subject name, Volume)``.

    Every slice of a volume is in it, the head's ``train`` slices too (a volume cannot be split by
    slice): what is fitted on these is fitted on seen anatomy, and the held-out subject measures it."""
    for subject in available_head_subjects():
        volume = load_volume(subject.path, modality=Modality.MR)
        tissue = volume.array[volume.array > np.percentile(volume.array, 50)]
        scaled = volume.array / float(np.percentile(tissue, 99))
        yield subject.name, volume.with_array(scaled.astype(np.float32))
        for _ in range(per_subject):
            yield subject.name, volume.with_array(vary_volume(scaled, rng, params).astype(np.float32))


@dataclass
class SampleSource:
    """The slices of one split of every training subject, for drawing samples."""

    slices: list[np.ndarray]
    subjects: list[str]

    @classmethod
    def of(cls, stacks: list[SubjectStack], split: str) -> "SampleSource":
        slices, names = [], []
        for stack in stacks:
            for s, label in zip(stack.slices, stack.split, strict=True):
                if label == split:
                    slices.append(s)
                    names.append(stack.name)
        if not slices:
            raise ValueError(f"no {split} slices in {[s.name for s in stacks]}")
        return cls(slices, names)


def split_source(split: str) -> SampleSource:
    """The ``split`` slices of every available training subject (:data:`HEAD_SUBJECTS`)."""
    return SampleSource.of([load_subject(s) for s in available_head_subjects()], split)


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # (H, W) normalised
    label: np.ndarray  # (H, W) bool
    kind: str


def draw_sample(source: SampleSource, rng: np.random.Generator, variation: VariationParams,
                anomalies: AnomalyParams) -> Sample:
    """One training or validation image (module docstring, step 2), before reconstruction."""
    index = int(rng.integers(len(source.slices)))
    varied = vary(source.slices[index], rng, variation)
    donor = source.slices[int(rng.integers(len(source.slices)))]
    anomaly = random_anomaly(varied, rng, others=[donor], params=anomalies)
    image = anomaly.image
    if rng.uniform() < variation.quantise_probability:
        image = quantise(image)
    try:
        low, high = robust_scale(image, Modality.MR)
    except ValueError:  # a crop holding (almost) no tissue: scale as the whole-slice tissue
        low, high = 0.0, 1.0
    high = low + (high - low) * rng.uniform(0.85, 1.15)
    return Sample(robust_normalize(image, scale=(low, high)), anomaly.label, anomaly.kind)


@dataclass
class HeadTrainingConfig:
    """Everything that decides a training run; recorded in the sidecar."""

    head: HeadConfig = field(default_factory=HeadConfig)
    variation: VariationParams = field(default_factory=VariationParams)
    anomalies: AnomalyParams = field(default_factory=AnomalyParams)
    steps: int = 14000
    batch_size: int = 16
    crop: int = 96
    border_crop_probability: float = 0.0
    hard_negative_probability: float = 0.0  # share of clean crops centred on the current head's hottest pixel
    image_loss_weight: float = 0.0  # weight of the crop-level loss on the slice score's logit (image_logit)
    lr: float = 2e-3
    lr_min: float = 5e-5
    pool_size: int = 3000
    refresh_every: int = 500
    refresh_size: int = 250
    val_size: int = 240
    validate_every: int = 500
    checkpoint_seconds: float = 240.0
    seed: int = 0


def crop_window(sample: Sample, size: int, rng: np.random.Generator,
                border_probability: float = 0.0, hot: tuple[int, int] | None = None) -> tuple[slice, slice]:
    """A ``size`` square inside the sample: around a label pixel when it has one, else anywhere; with
    probability ``border_probability`` it touches the slice's edge instead (so the head sees anatomy
    cut off by the field of view; whole slices are scored). The committed head was trained with 0:
    0.35 did worse on the synthetic validation set (README). ``hot``: a clean sample's crop is
    placed around this pixel instead (hard-negative mining: where the head being trained is wrong)."""
    h, w = sample.image.shape
    if hot is not None and not sample.label.any():
        top = int(np.clip(hot[0] - rng.integers(size // 4, 3 * size // 4), 0, h - size))
        left = int(np.clip(hot[1] - rng.integers(size // 4, 3 * size // 4), 0, w - size))
        return slice(top, top + size), slice(left, left + size)
    if border_probability > 0 and rng.uniform() < border_probability:
        top = int(rng.choice([0, h - size])) if rng.uniform() < 0.5 else int(rng.integers(0, h - size + 1))
        left = int(rng.choice([0, w - size])) if top not in (0, h - size) else int(rng.integers(0, w - size + 1))
        return slice(top, top + size), slice(left, left + size)
    if sample.label.any():
        points = np.argwhere(sample.label)
        cy, cx = points[rng.integers(len(points))]
        top = int(np.clip(cy - rng.integers(size // 4, 3 * size // 4), 0, h - size))
        left = int(np.clip(cx - rng.integers(size // 4, 3 * size // 4), 0, w - size))
    else:
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return slice(top, top + size), slice(left, left + size)


class Pool:
    """Ready training crops: ``channels`` ``(N, C, crop, crop)`` float16 and ``labels`` ``(N, crop, crop)`` bool."""

    def __init__(self, channels: np.ndarray, labels: np.ndarray) -> None:
        self.channels, self.labels = channels, labels

    @staticmethod
    def make(n: int, source: SampleSource, reconstruct: Reconstructor, config: HeadTrainingConfig,
             rng: np.random.Generator, head: HeadDetector | None = None) -> "Pool":
        """``n`` new crops; with ``head`` (the model being trained), a share
        ``config.hard_negative_probability`` of the clean ones is centred on its hottest pixel."""
        samples = [draw_sample(source, rng, config.variation, config.anomalies) for _ in range(n)]
        inputs = reconstruct([s.image for s in samples], config.head.inputs)
        hot: list[tuple[int, int] | None] = [None] * n
        if head is not None and config.hard_negative_probability > 0:
            picks = [i for i, s in enumerate(samples)
                     if not s.label.any() and rng.uniform() < config.hard_negative_probability]
            was_training = head.model.training
            head.model.eval()
            for i, prob in zip(picks, head.probability([inputs[i] for i in picks]), strict=True):
                hot[i] = tuple(int(v) for v in np.unravel_index(int(np.argmax(prob)), prob.shape))
            head.model.train(was_training)
        channels, labels = [], []
        for sample, x, spot in zip(samples, inputs, hot, strict=True):
            rows, cols = crop_window(sample, config.crop, rng, config.border_crop_probability, spot)
            channels.append(x[:, rows, cols])
            labels.append(sample.label[rows, cols])
        return Pool(np.stack(channels).astype(np.float16), np.stack(labels))

    def replace(self, other: "Pool", rng: np.random.Generator) -> None:
        where = rng.choice(len(self.labels), size=len(other.labels), replace=False)
        self.channels[where], self.labels[where] = other.channels, other.labels

    def batch(self, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        picks = rng.integers(0, len(self.labels), size=size)
        x = self.channels[picks].astype(np.float32)
        y = self.labels[picks][:, None].astype(np.float32)
        k = int(rng.integers(4))
        x, y = np.rot90(x, k, axes=(2, 3)), np.rot90(y, k, axes=(2, 3))
        if rng.uniform() < 0.5:
            x, y = x[..., ::-1], y[..., ::-1]
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))


@dataclass
class ValidationSet:
    """Whole held-out synthetic slices with their inputs and labels."""

    inputs: list[np.ndarray]
    labels: list[np.ndarray]
    kinds: list[str]

    @staticmethod
    def make(n: int, source: SampleSource, reconstruct: Reconstructor, config: HeadTrainingConfig,
             seed: int) -> "ValidationSet":
        rng = np.random.default_rng(seed)
        # Half corrupted, half clean, whatever the training probability.
        anomalies = replace(config.anomalies, probability=0.5)
        samples = [draw_sample(source, rng, config.variation, anomalies) for _ in range(n)]
        inputs = reconstruct([s.image for s in samples], config.head.inputs)
        return ValidationSet(inputs, [s.label for s in samples], [s.kind for s in samples])


def validation_metrics(head: HeadDetector, val: ValidationSet, *, pixel_sample: int = 200_000,
                       seed: int = 0) -> dict[str, float]:
    """Pixel AUROC, mean Dice at 0.5 (corrupted slices), image AUROC of :func:`slice_score`."""
    probs = head.probability(val.inputs)
    scores = np.array([slice_score(p, head.config.score_window) for p in probs])
    is_anomalous = np.array([lab.any() for lab in val.labels])
    flat_p = np.concatenate([p.ravel() for p in probs])
    flat_y = np.concatenate([lab.ravel() for lab in val.labels])
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(flat_p), size=min(pixel_sample, len(flat_p)), replace=False)
    dices = [dice(p > 0.5, lab) for p, lab in zip(probs, val.labels, strict=True) if lab.any()]
    return {
        "pixel_auroc": round(float(pixel_auroc(flat_p[pick], flat_y[pick])), 4),
        "dice": round(float(np.mean(dices)), 4),
        "image_auroc": round(float(image_auroc(is_anomalous.astype(int), scores)), 4),
    }


def _learning_rate(step: int, config: HeadTrainingConfig) -> float:
    cosine = 0.5 * (1 + np.cos(np.pi * min(step, config.steps) / config.steps))
    return float(config.lr_min + (config.lr - config.lr_min) * cosine)


def train_head(config: HeadTrainingConfig, reconstruct: Reconstructor, out: Path, *,
               checkpoint: Path, resume: bool = False, log=print, command: str = "") -> HeadDetector:
    """Train (or resume) a head and save the best validation step to ``out`` (see the module docstring)."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    subjects = [s.name for s in available_head_subjects()]
    train_source, val_source = split_source("train"), split_source("val")
    model = build_head(config.head)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = DiceCELoss(sigmoid=True, batch=True)
    rng = np.random.default_rng(config.seed)
    log(f"subjects: {subjects}; train slices {len(train_source.slices)}, "
        f"val slices {len(val_source.slices)}")
    t0 = time.perf_counter()
    val = ValidationSet.make(config.val_size, val_source, reconstruct, config, seed=config.seed + 1000)
    history: dict[str, list] = {"step": [], "train_loss": [], "seconds": [], "pixel_auroc": [], "dice": [],
                                "image_auroc": []}
    step, best, best_state, elapsed = 0, -np.inf, None, 0.0
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        pool = Pool(state["pool_channels"], state["pool_labels"])
        rng.bit_generator.state = state["rng"]
        step, best, best_state, history, elapsed = (state["step"], state["best"], state["best_state"],
                                                    state["history"], state["elapsed"])
        log(f"resumed at step {step} ({elapsed:.0f} s of training so far)")
    else:
        pool = Pool.make(config.pool_size, train_source, reconstruct, config, rng)
        log(f"pool of {config.pool_size} and validation set of {config.val_size} made in "
            f"{time.perf_counter() - t0:.0f} s")
    head = HeadDetector(model, config.head)
    start, last_checkpoint, running, n_running = time.perf_counter() - elapsed, time.perf_counter(), 0.0, 0

    def save_checkpoint() -> None:
        torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(), "pool_channels": pool.channels,
                    "pool_labels": pool.labels, "rng": rng.bit_generator.state, "step": step, "best": best,
                    "best_state": best_state, "history": history, "elapsed": time.perf_counter() - start},
                   checkpoint)

    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    while step < config.steps:
        model.train()
        for group in optimiser.param_groups:
            group["lr"] = _learning_rate(step, config)
        x, y = pool.batch(config.batch_size, rng)
        logits = model(x)
        loss = loss_fn(logits, y)
        if config.image_loss_weight > 0:
            target = y.amax(dim=(1, 2, 3))
            loss = loss + config.image_loss_weight * binary_cross_entropy_with_logits(
                image_logit(logits, config.head.score_window), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        running, n_running = running + loss.item(), n_running + 1
        if step % config.refresh_every == 0 and step < config.steps:
            pool.replace(Pool.make(config.refresh_size, train_source, reconstruct, config, rng, head), rng)
        if step % config.validate_every == 0 or step == config.steps:
            model.eval()
            metrics = validation_metrics(head, val)
            history["step"].append(step)
            history["train_loss"].append(round(running / max(n_running, 1), 4))
            history["seconds"].append(round(time.perf_counter() - start, 1))
            for k, v in metrics.items():
                history[k].append(v)
            running, n_running = 0.0, 0
            quality = metrics["image_auroc"] + metrics["dice"]
            if quality > best:
                best = quality
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            log(f"step {step}: loss {history['train_loss'][-1]:.4f} val {metrics} "
                f"({history['seconds'][-1]:.0f} s)")
        if time.perf_counter() - last_checkpoint > config.checkpoint_seconds:
            save_checkpoint()
            last_checkpoint = time.perf_counter()
    save_checkpoint()
    if best_state is not None:
        model.load_state_dict(best_state)
    best_index = int(np.argmax(np.add(history["image_auroc"], history["dice"])))
    record = {
        "command": command,
        "training": {
            "subjects": subjects,
            "held_out": UNSEEN_SUBJECT.name,
            "steps": config.steps,
            "batch_size": config.batch_size,
            "crop": config.crop,
            "border_crop_probability": config.border_crop_probability,
            "hard_negative_probability": config.hard_negative_probability,
            "image_loss_weight": config.image_loss_weight,
            "lr": config.lr,
            "lr_min": config.lr_min,
            "pool_size": config.pool_size,
            "refresh_every": config.refresh_every,
            "refresh_size": config.refresh_size,
            "seed": config.seed,
            "torch_threads": torch.get_num_threads(),
            "seconds": round(time.perf_counter() - start, 1),
            "variation": config.variation.as_dict(),
            "anomalies": config.anomalies.as_dict(),
            "loss": "DiceCELoss(sigmoid=True, batch=True)" + (
                f" + {config.image_loss_weight} BCE(image_logit)" if config.image_loss_weight > 0 else ""),
            "kept_step": history["step"][best_index],
        },
        "validation_curve": history,
    }
    head = HeadDetector(model.eval(), config.head, record)
    head.save(out)
    return head
