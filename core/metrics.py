"""Evaluation metrics: pure functions over numpy arrays.

Three families, each tested against scikit-learn, the ``krippendorff`` package or a published
worked example (``tests/test_metrics.py``):

* **Detection** (one score per image): :func:`image_auroc`, :func:`image_auprc`,
  :func:`f1_at_threshold`, :func:`f1_max`, :func:`roc_curve_points`.
* **Localisation** (one map per image against a ground-truth mask): :func:`dice`, :func:`iou`,
  :func:`pixel_auroc`, :func:`aupro`, :func:`pro_curve_points`, :func:`pointing_game`.
* **Agreement** (reader studies): :func:`cohen_kappa`, :func:`krippendorff_alpha`, :func:`icc`,
  :func:`icc_with_ci`, and :func:`bootstrap_ci` for a statistic of one sample.

Conventions shared by every function:

* label / mask value 1 (``True``) means *anomalous* (an artifact is present there);
* a higher score or map value means *more anomalous*;
* a metric that has no value for the input (AUROC with one class, kappa when both readers used a
  single category ...) raises :class:`UndefinedMetricError`, a ``ValueError`` whose message says
  why; malformed input (wrong shapes, NaN, non-binary labels) raises a plain ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage, stats


class UndefinedMetricError(ValueError):
    """The metric has no value for this input (e.g. AUROC when only one class is present)."""


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _as_binary(values: ArrayLike, name: str) -> np.ndarray:
    """Boolean copy of ``values``; accepts bool or numbers that are all 0 or 1."""
    array = np.asarray(values)
    if array.dtype == bool:
        return array
    if array.size and not np.isin(array, (0, 1)).all():
        found = np.unique(array[~np.isin(array, (0, 1))])[:5]
        raise ValueError(f"{name} must be boolean or 0/1; found other values such as {found.tolist()}")
    return array.astype(bool)


def _as_finite(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


def _detection_inputs(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    labels_ = _as_binary(labels, "labels")
    scores_ = _as_finite(scores, "scores")
    if labels_.ndim != 1 or labels_.shape != scores_.shape:
        raise ValueError(
            f"labels and scores must be 1-D and of equal length, got shapes {labels_.shape} and {scores_.shape}"
        )
    if labels_.size == 0:
        raise ValueError("labels and scores are empty")
    return labels_, scores_


def _map_mask_inputs(maps: ArrayLike, masks: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    maps_ = _as_finite(maps, "maps")
    masks_ = _as_binary(masks, "masks")
    if maps_.shape != masks_.shape:
        raise ValueError(f"maps and masks must have the same shape, got {maps_.shape} and {masks_.shape}")
    if maps_.size == 0:
        raise ValueError("maps and masks are empty")
    return maps_, masks_


def _require_both_classes(labels: np.ndarray, metric: str, unit: str = "labels") -> None:
    n_positive = int(labels.sum())
    if n_positive == 0 or n_positive == labels.size:
        only = "anomalous (1)" if n_positive else "normal (0)"
        raise UndefinedMetricError(
            f"{metric} is undefined when only one class is present: all {labels.size} {unit} are {only}; "
            "it needs at least one normal and one anomalous example"
        )


def _as_images(array: np.ndarray, image_ndim: int) -> np.ndarray:
    """Reshape ``(..., *image_shape)`` to ``(n_images, *image_shape)``."""
    if not 1 <= image_ndim <= array.ndim:
        raise ValueError(f"image_ndim={image_ndim} does not fit arrays of shape {array.shape}")
    return array.reshape((-1, *array.shape[array.ndim - image_ndim :]))


# --------------------------------------------------------------------------------------------
# Detection (image level)
# --------------------------------------------------------------------------------------------


def _counts_at_thresholds(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True- and false-positive counts when predicting ``score >= t`` for each distinct score ``t``.

    Returns ``(thresholds, tps, fps)``, thresholds in decreasing order (as scikit-learn's
    ``_binary_clf_curve``). Tied scores share one threshold, so ties are never split.
    """
    order = np.argsort(scores, kind="stable")[::-1]
    sorted_scores, sorted_labels = scores[order], labels[order]
    last_of_each_value = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    tps = np.cumsum(sorted_labels)[last_of_each_value]
    fps = last_of_each_value + 1 - tps
    return sorted_scores[last_of_each_value], tps, fps


def roc_curve_points(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every point of the ROC curve, one per distinct score.

    Equal to ``sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)``.

    Args:
        labels: ``(N,)`` 1 = anomalous, 0 = normal.
        scores: ``(N,)`` higher = more anomalous.

    Returns:
        ``(fpr, tpr, thresholds)``, each ``(M + 1,)`` for ``M`` distinct scores: the curve starts at
        ``(0, 0)`` with threshold ``+inf`` and point ``i`` predicts "anomalous" for ``score >= thresholds[i]``.

    Raises:
        UndefinedMetricError: only one class is present.
    """
    labels_, scores_ = _detection_inputs(labels, scores)
    _require_both_classes(labels_, "The ROC curve")
    thresholds, tps, fps = _counts_at_thresholds(labels_, scores_)
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    return fpr, tpr, np.r_[np.inf, thresholds]


def image_auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve of image-level anomaly scores. Higher is better; 0.5 is chance.

    Equals the probability that a random anomalous image scores higher than a random normal one,
    ties counting one half (the Mann-Whitney U statistic divided by ``n_anomalous * n_normal``).
    Trapezoidal area under :func:`roc_curve_points`; equal to ``sklearn.metrics.roc_auc_score``.

    Args:
        labels: ``(N,)`` 1 = anomalous, 0 = normal.
        scores: ``(N,)`` higher = more anomalous.

    Returns:
        AUROC in [0, 1].

    Raises:
        UndefinedMetricError: only one class is present (no pair of images to rank).
    """
    fpr, tpr, _ = roc_curve_points(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def auroc_standard_error(auroc: float, n_anomalous: int, n_normal: int) -> float:
    """Hanley & McNeil's (1982) standard error of an AUROC from ``n_anomalous`` and ``n_normal`` images.

    ``SE^2 = (A(1 - A) + (n1 - 1)(Q1 - A^2) + (n0 - 1)(Q2 - A^2)) / (n1 n0)`` with
    ``Q1 = A / (2 - A)`` and ``Q2 = 2A^2 / (1 + A)`` (exponential score distributions).
    """
    a, n1, n0 = float(auroc), int(n_anomalous), int(n_normal)
    if n1 < 1 or n0 < 1:
        raise UndefinedMetricError("an AUROC standard error needs at least one image of each class")
    q1, q2 = a / (2.0 - a), 2.0 * a * a / (1.0 + a)
    variance = (a * (1.0 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0)
    return float(np.sqrt(max(variance, 0.0)))


def image_auprc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Average precision (area under the precision-recall curve, step-wise). Higher is better.

    ``AP = sum_n (R_n - R_(n-1)) * P_n`` over distinct thresholds in decreasing order, with precision
    ``P_n`` and recall ``R_n`` at threshold ``n`` and ``R_0 = 0``: no interpolation, so it is not
    optimistic the way trapezoidal PR areas are. Chance level is the fraction of anomalous images.
    Equal to ``sklearn.metrics.average_precision_score``.

    Args:
        labels: ``(N,)`` 1 = anomalous, 0 = normal.
        scores: ``(N,)`` higher = more anomalous.

    Returns:
        Average precision in [0, 1].

    Raises:
        UndefinedMetricError: only one class is present.
    """
    labels_, scores_ = _detection_inputs(labels, scores)
    _require_both_classes(labels_, "AUPRC")
    _, tps, fps = _counts_at_thresholds(labels_, scores_)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def f1_at_threshold(labels: ArrayLike, scores: ArrayLike, threshold: float) -> float:
    """F1 score of the prediction "anomalous when ``score >= threshold``". Higher is better.

    ``F1 = 2 TP / (2 TP + FP + FN)``, the harmonic mean of precision and recall of the anomalous class.
    Equal to ``sklearn.metrics.f1_score(labels, scores >= threshold)``.

    Args:
        labels: ``(N,)`` 1 = anomalous, 0 = normal.
        scores: ``(N,)`` higher = more anomalous.
        threshold: decision threshold on the score scale.

    Returns:
        F1 in [0, 1].

    Raises:
        UndefinedMetricError: no anomalous image (recall, hence F1, is undefined).
    """
    labels_, scores_ = _detection_inputs(labels, scores)
    if not labels_.any():
        raise UndefinedMetricError("F1 is undefined without any anomalous (1) label")
    predicted = scores_ >= threshold
    true_positives = np.sum(predicted & labels_)
    return float(2 * true_positives / (predicted.sum() + labels_.sum()))


def f1_max(labels: ArrayLike, scores: ArrayLike) -> tuple[float, float]:
    """Best F1 over all thresholds, and the threshold that reaches it (anomalib's adaptive threshold).

    Every distinct score is tried as a threshold (predict anomalous when ``score >= t``). When several
    thresholds reach the same best F1 the lowest is returned, as anomalib's ``F1AdaptiveThreshold``
    does (``argmax`` over its ascending threshold list). Choose the threshold on validation data and
    report F1 on test data with :func:`f1_at_threshold`: F1-max on the data it was fitted to is optimistic.

    Args:
        labels: ``(N,)`` 1 = anomalous, 0 = normal.
        scores: ``(N,)`` higher = more anomalous.

    Returns:
        ``(best_f1, threshold)``; ``f1_at_threshold(labels, scores, threshold) == best_f1``.

    Raises:
        UndefinedMetricError: only one class is present.
    """
    labels_, scores_ = _detection_inputs(labels, scores)
    _require_both_classes(labels_, "F1-max")
    thresholds, tps, fps = _counts_at_thresholds(labels_, scores_)
    # 2TP / (2TP + FP + FN) with TP + FN = number of anomalous images.
    f1 = 2 * tps / (tps + fps + tps[-1])
    # Thresholds decrease along the arrays: the last maximum is the lowest threshold.
    best = f1.size - 1 - int(np.argmax(f1[::-1]))
    return float(f1[best]), float(thresholds[best])


# --------------------------------------------------------------------------------------------
# Localisation (pixel level)
# --------------------------------------------------------------------------------------------


def _overlap_ratio(numerator: np.ndarray, denominator: np.ndarray, empty_value: float) -> float | np.ndarray:
    safe = np.where(denominator == 0, 1, denominator)
    result = np.where(denominator == 0, empty_value, numerator / safe)
    return float(result) if result.ndim == 0 else result


def dice(
    pred: ArrayLike, target: ArrayLike, *, empty_value: float = 1.0, axis: int | tuple[int, ...] | None = None
) -> float | np.ndarray:
    """Dice coefficient (Sorensen-Dice, F1 of pixels) of a predicted and a true mask. Higher is better.

    ``Dice = 2 |P & T| / (|P| + |T|)``.

    When both masks are empty the formula is 0/0. The default ``empty_value=1.0`` counts "no artifact
    predicted on an image without artifact" as perfect agreement, which is what a reader would say;
    it also keeps per-image means from punishing correct silence. Pass ``np.nan`` to leave such
    images out of an ``np.nanmean`` instead (MONAI's ``ignore_empty=True``).

    Args:
        pred: boolean (or 0/1) mask, any shape.
        target: boolean (or 0/1) mask, same shape.
        empty_value: value returned where both masks are empty.
        axis: axes to reduce, as in ``np.sum``. ``None`` pools every pixel into one value; for a batch
            ``(N, H, W)`` pass ``axis=(1, 2)`` to get one value per image.

    Returns:
        A float in [0, 1] when every axis is reduced, else an array of the remaining shape, e.g. ``(N,)``.
    """
    pred_, target_ = _as_binary(pred, "pred"), _as_binary(target, "target")
    if pred_.shape != target_.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred_.shape} and {target_.shape}")
    intersection = np.sum(pred_ & target_, axis=axis)
    total = np.sum(pred_, axis=axis) + np.sum(target_, axis=axis)
    return _overlap_ratio(2 * intersection, total, empty_value)


def iou(
    pred: ArrayLike, target: ArrayLike, *, empty_value: float = 1.0, axis: int | tuple[int, ...] | None = None
) -> float | np.ndarray:
    """Intersection over union (Jaccard index) of a predicted and a true mask. Higher is better.

    ``IoU = |P & T| / |P | T|``; relates to Dice by ``IoU = Dice / (2 - Dice)``. Both masks empty
    gives ``empty_value`` for the same reason as in :func:`dice`.

    Args:
        pred: boolean (or 0/1) mask, any shape.
        target: boolean (or 0/1) mask, same shape.
        empty_value: value returned where both masks are empty.
        axis: axes to reduce, as in :func:`dice`.

    Returns:
        A float in [0, 1] when every axis is reduced, else an array of the remaining shape.
    """
    pred_, target_ = _as_binary(pred, "pred"), _as_binary(target, "target")
    if pred_.shape != target_.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred_.shape} and {target_.shape}")
    intersection = np.sum(pred_ & target_, axis=axis)
    union = np.sum(pred_ | target_, axis=axis)
    return _overlap_ratio(intersection, union, empty_value)


def pixel_auroc(maps: ArrayLike, masks: ArrayLike) -> float:
    """AUROC over all pixels of all images pooled together. Higher is better; 0.5 is chance.

    Every pixel is one sample (label from ``masks``, score from ``maps``), as in the MVTec AD
    benchmark and anomalib's pixel AUROC. Large anomalies weigh more than small ones; :func:`aupro`
    weighs every anomaly region equally.

    Args:
        maps: float anomaly maps, any shape, e.g. ``(N, H, W)``.
        masks: boolean ground-truth masks, same shape.

    Returns:
        AUROC in [0, 1].

    Raises:
        UndefinedMetricError: no anomalous pixel, or no normal pixel.
    """
    maps_, masks_ = _map_mask_inputs(maps, masks)
    _require_both_classes(masks_.ravel(), "Pixel AUROC", unit="pixels")
    return image_auroc(masks_.ravel(), maps_.ravel())


def pro_curve_points(
    maps: ArrayLike, masks: ArrayLike, *, image_ndim: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact per-region-overlap (PRO) curve: one point per distinct map value.

    For a threshold ``t`` a pixel is predicted anomalous when ``map >= t``. Then

    * ``PRO(t)`` = mean over all ground-truth regions of all images of the fraction of the region's
      pixels predicted anomalous (every region counts once, whatever its size);
    * ``FPR(t)`` = fraction of all normal pixels (``mask == 0``, over all images) predicted anomalous.

    Regions are the connected components of each image's mask with full connectivity (8-connected
    in 2-D, 26 in 3-D), as in the MVTec AD evaluation code (``scipy.ndimage.label`` with a 3x3
    structure of ones) and in anomalib (OpenCV ``connectedComponents``, 8-connected by default).
    Components never join across images.

    Args:
        maps: float anomaly maps ``(..., *image_shape)``; leading axes are images.
        masks: boolean ground-truth masks, same shape.
        image_ndim: number of trailing axes that form one image: 2 for slices ``(N, H, W)``, 3 for
            volumes ``(N, X, Y, Z)`` (an unbatched ``(X, Y, Z)`` volume also works with 3).

    Returns:
        ``(fpr, pro, thresholds)``, each ``(M + 1,)`` for ``M`` distinct map values, starting at
        ``(0, 0)`` with threshold ``+inf`` and ending at ``(1, 1)``.

    Raises:
        UndefinedMetricError: the masks hold no anomalous region, or no normal pixel.
    """
    maps_, masks_ = _map_mask_inputs(maps, masks)
    images = _as_images(masks_, image_ndim)
    # Connect within an image only: the structure is flat along the image axis.
    structure = np.zeros((3,) * (image_ndim + 1), dtype=bool)
    structure[1] = True
    regions, n_regions = ndimage.label(images, structure=structure)
    regions = regions.ravel()
    n_normal = int(np.sum(regions == 0))
    if n_regions == 0:
        raise UndefinedMetricError("The PRO curve (and AUPRO) is undefined without any anomalous region in the masks")
    if n_normal == 0:
        raise UndefinedMetricError(
            "The PRO curve (and AUPRO) is undefined without any normal pixel (FPR has no denominator)"
        )

    region_sizes = np.bincount(regions).astype(np.float64)
    region_sizes[0] = np.inf  # normal pixels add nothing to PRO
    # Each anomalous pixel adds 1/size(its region) to the region's overlap once it is above threshold.
    pro_weight = 1.0 / region_sizes[regions]
    is_normal = regions == 0

    scores = maps_.ravel()
    order = np.argsort(scores, kind="stable")[::-1]
    sorted_scores = scores[order]
    last_of_each_value = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    fpr = np.cumsum(is_normal[order])[last_of_each_value] / n_normal
    # Rounding in the float cumulative sum can overshoot 1 by an ulp.
    pro = np.minimum(np.cumsum(pro_weight[order])[last_of_each_value] / n_regions, 1.0)
    return np.r_[0.0, fpr], np.r_[0.0, pro], np.r_[np.inf, sorted_scores[last_of_each_value]]


def _area_up_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoidal area under ``y(x)`` on ``[x[0], x_max]``; ``x`` non-decreasing, ``x[-1] >= x_max``.

    The curve is interpolated linearly at ``x_max`` when no point lies exactly there.
    """
    inside = int(np.searchsorted(x, x_max, side="right"))
    xs, ys = x[:inside], y[:inside]
    if xs[-1] < x_max:
        x0, x1, y0, y1 = x[inside - 1], x[inside], y[inside - 1], y[inside]
        xs = np.r_[xs, x_max]
        ys = np.r_[ys, y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)]
    return float(np.trapezoid(ys, xs))


def aupro(maps: ArrayLike, masks: ArrayLike, *, fpr_limit: float = 0.3, image_ndim: int = 2) -> float:
    """Normalised area under the PRO curve up to a false-positive rate (MVTec AD's AUPRO). Higher is better.

    ``AUPRO = (1 / fpr_limit) * integral_0^fpr_limit PRO(FPR) dFPR`` over the curve of
    :func:`pro_curve_points`. Unlike pixel AUROC, a small artifact found completely counts as much as a
    large one, and only the low-false-alarm part of the curve (the part a reader would use) counts.

    The curve is exact: every distinct map value is a threshold (one sort, as in the MVTec AD
    evaluation code), so no threshold grid has to be chosen. The trapezoidal area is interpolated
    linearly at ``fpr_limit``. anomalib computes the same quantity but resamples each region's ROC
    curve onto a common grid before averaging, so its value can differ slightly from this one.

    Reference: Bergmann et al., "The MVTec Anomaly Detection Dataset: A Comprehensive Real-World Dataset
    for Unsupervised Anomaly Detection", IJCV 129 (2021) 1038-1059.

    Args:
        maps: float anomaly maps ``(..., *image_shape)``, e.g. ``(N, H, W)``.
        masks: boolean ground-truth masks, same shape. Normal images (empty masks) add normal pixels.
        fpr_limit: upper end of the integration, in ``(0, 1]``; 0.3 is the MVTec AD convention.
        image_ndim: number of trailing axes that form one image (see :func:`pro_curve_points`).

    Returns:
        AUPRO in [0, 1]: 1 when every anomalous pixel scores above every normal pixel.

    Raises:
        UndefinedMetricError: no anomalous region, or no normal pixel.
    """
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must lie in (0, 1], got {fpr_limit}")
    fpr, pro, _ = pro_curve_points(maps, masks, image_ndim=image_ndim)
    return _area_up_to(fpr, pro, fpr_limit) / fpr_limit


def pointing_game(maps: ArrayLike, masks: ArrayLike, *, image_ndim: int = 2) -> float:
    """Fraction of anomalous images whose map peaks inside the ground-truth mask. Higher is better.

    For every image with a non-empty mask, a hit when the pixel of maximal map value lies in the mask
    (no tolerance margin, unlike the 15-pixel margin of Zhang et al., "Top-down neural attention by
    excitation backprop", ECCV 2016). On ties the first maximal pixel in C order counts (``np.argmax``).
    Images with empty masks are skipped: there is nothing to point at.

    Args:
        maps: float maps ``(..., *image_shape)``, e.g. ``(N, H, W)``.
        masks: boolean masks, same shape.
        image_ndim: number of trailing axes that form one image.

    Returns:
        Hit rate in [0, 1].

    Raises:
        UndefinedMetricError: no image has a non-empty mask.
    """
    maps_, masks_ = _map_mask_inputs(maps, masks)
    pixels_per_image = int(np.prod(maps_.shape[maps_.ndim - image_ndim :]))
    flat_maps = _as_images(maps_, image_ndim).reshape(-1, pixels_per_image)
    flat_masks = _as_images(masks_, image_ndim).reshape(-1, pixels_per_image)
    anomalous = flat_masks.any(axis=1)
    if not anomalous.any():
        raise UndefinedMetricError("The pointing game is undefined without any image with a non-empty mask")
    peaks = np.argmax(flat_maps[anomalous], axis=1)
    hits = np.take_along_axis(flat_masks[anomalous], peaks[:, None], axis=1)
    return float(hits.mean())


# --------------------------------------------------------------------------------------------
# Agreement (reader studies)
# --------------------------------------------------------------------------------------------


class KappaWeights(StrEnum):
    """How Cohen's kappa weighs a disagreement between categories ``i`` and ``j`` (their positions)."""

    LINEAR = "linear"  # |i - j|
    QUADRATIC = "quadratic"  # (i - j)^2


def cohen_kappa(
    a: ArrayLike, b: ArrayLike, *, weights: KappaWeights | str | None = None, labels: ArrayLike | None = None
) -> float:
    """Cohen's kappa between two readers, optionally weighted for ordinal categories. Higher is better.

    ``kappa = 1 - sum(w * O) / sum(w * E)`` with ``O`` the observed confusion matrix of the two readers,
    ``E`` the one expected by chance from their marginals (``outer(row sums, column sums) / N``) and
    ``w`` the disagreement weights: 0 on the diagonal, and off it 1 (unweighted), ``|i - j|``
    (linear) or ``(i - j)^2`` (quadratic) for category positions ``i, j``. 1 is perfect agreement,
    0 is chance. Quadratic weighting approximates the ICC for ordinal scales.

    Reference: Cohen, Psychol. Bull. 70 (1968) 213-220. Equal to ``sklearn.metrics.cohen_kappa_score``
    except that a rating outside ``labels`` raises here instead of being silently dropped.

    Args:
        a: ``(N,)`` ratings of reader A.
        b: ``(N,)`` ratings of reader B for the same N cases.
        weights: ``None``, ``"linear"`` or ``"quadratic"``.
        labels: the ordered categories; default the sorted union of both readers' ratings. Give the full
            scale (e.g. ``[1, 2, 3, 4, 5]``) so that weights use scale positions even for unused categories.

    Returns:
        kappa in [-1, 1].

    Raises:
        UndefinedMetricError: both readers used one and the same category throughout (0/0).
    """
    a_, b_ = np.asarray(a), np.asarray(b)
    if a_.ndim != 1 or a_.shape != b_.shape or a_.size == 0:
        raise ValueError(f"a and b must be non-empty 1-D arrays of equal length, got shapes {a_.shape} and {b_.shape}")
    categories = np.unique(np.concatenate([a_, b_])) if labels is None else np.asarray(labels)
    positions = {value: index for index, value in enumerate(categories.tolist())}
    if len(positions) != categories.size:
        raise ValueError(f"labels must not repeat a category, got {categories.tolist()}")
    outside = set(a_.tolist()) | set(b_.tolist())
    outside -= positions.keys()
    if outside:
        raise ValueError(f"ratings {sorted(outside)} are not among labels {categories.tolist()}")

    n_categories = categories.size
    index_a = np.array([positions[value] for value in a_.tolist()])
    index_b = np.array([positions[value] for value in b_.tolist()])
    observed = np.bincount(index_a * n_categories + index_b, minlength=n_categories**2)
    observed = observed.reshape(n_categories, n_categories).astype(np.float64)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / a_.size

    i, j = np.indices((n_categories, n_categories))
    if weights is None:
        disagreement = (i != j).astype(np.float64)
    elif KappaWeights(weights) is KappaWeights.LINEAR:
        disagreement = np.abs(i - j).astype(np.float64)
    else:
        disagreement = ((i - j) ** 2).astype(np.float64)

    expected_disagreement = np.sum(disagreement * expected)
    if expected_disagreement == 0:
        raise UndefinedMetricError("Cohen's kappa is undefined when both readers used one single category throughout")
    return float(1.0 - np.sum(disagreement * observed) / expected_disagreement)


class MeasurementLevel(StrEnum):
    """Krippendorff's metric difference functions, by the scale the values are on."""

    NOMINAL = "nominal"  # categories without order
    ORDINAL = "ordinal"  # ordered categories (Likert ratings)
    INTERVAL = "interval"  # equal steps
    RATIO = "ratio"  # equal steps and a true zero


def _squared_differences(values: np.ndarray, value_counts: np.ndarray, level: MeasurementLevel) -> np.ndarray:
    """Krippendorff's ``delta^2(c, k)`` for every pair of the sorted distinct ``values``."""
    c, k = np.meshgrid(values, values, indexing="ij")
    if level is MeasurementLevel.NOMINAL:
        return (c != k).astype(np.float64)
    if level is MeasurementLevel.INTERVAL:
        return (c - k) ** 2
    if level is MeasurementLevel.RATIO:
        total = c + k
        return np.divide((c - k) ** 2, total**2, out=np.zeros_like(total), where=total != 0)
    # Ordinal: (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2, which is (M_k - M_c)^2 with the "mid-cumulative"
    # rank M_v = (n_1 + ... + n_v) - n_v / 2.
    mid_rank = np.cumsum(value_counts) - value_counts / 2
    return (mid_rank[:, None] - mid_rank[None, :]) ** 2


def krippendorff_alpha(reliability_data: ArrayLike, level: MeasurementLevel | str) -> float:
    """Krippendorff's alpha for any number of raters, missing ratings allowed. Higher is better.

    ``alpha = 1 - D_o / D_e`` computed from the coincidence matrix ``o``: each unit (case) with
    ``m_u >= 2`` ratings contributes every ordered pair of its ratings from different raters with weight
    ``1 / (m_u - 1)``. With ``n_c`` the row sums of ``o`` and ``n = sum n_c`` (the pairable values),
    ``alpha = 1 - (n - 1) * sum_ck o_ck delta^2_ck / sum_ck n_c n_k delta^2_ck``, where ``delta^2``
    depends on ``level`` (nominal: 0/1; ordinal: rank distance from the value frequencies;
    interval: ``(c - k)^2``; ratio: ``((c - k) / (c + k))^2``). 1 is perfect agreement, 0 is chance.
    Units with a single rating are not pairable and are left out.

    Reference: Krippendorff, "Computing Krippendorff's Alpha-Reliability" (2011); its worked example
    (4 observers, 12 units, missing values) is reproduced in the tests for all four levels.

    Args:
        reliability_data: ``(n_raters, n_units)`` numeric ratings with ``np.nan`` for missing ones.
        level: the scale of the ratings: ``"nominal"``, ``"ordinal"``, ``"interval"`` or ``"ratio"``.
            Required, because the choice changes the value (1-5 usefulness ratings are ordinal).

    Returns:
        alpha, at most 1 (negative when raters disagree systematically).

    Raises:
        UndefinedMetricError: no unit has two ratings, or every pairable rating has the same value.
    """
    level_ = MeasurementLevel(level)
    data = np.asarray(reliability_data, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"reliability_data must be (n_raters, n_units), got shape {data.shape}")
    if np.isinf(data).any():
        raise ValueError("reliability_data holds infinite values (use np.nan for a missing rating)")
    present = ~np.isnan(data)
    values = np.unique(data[present])
    if level_ is MeasurementLevel.RATIO and values.size and values.min() < 0:
        raise ValueError("ratio-level alpha needs non-negative values")

    # counts[u, v]: how many raters gave unit u the value values[v].
    unit_index = np.broadcast_to(np.arange(data.shape[1]), data.shape)[present]
    value_index = np.searchsorted(values, data[present])
    counts = np.zeros((data.shape[1], values.size))
    np.add.at(counts, (unit_index, value_index), 1)
    ratings_per_unit = counts.sum(axis=1)
    pairable = ratings_per_unit >= 2
    if not pairable.any():
        raise UndefinedMetricError("Krippendorff's alpha is undefined: no unit was rated by two or more raters")
    counts, ratings_per_unit = counts[pairable], ratings_per_unit[pairable]

    weighted = counts / (ratings_per_unit - 1)[:, None]
    coincidences = weighted.T @ counts - np.diag(weighted.sum(axis=0))
    value_counts = coincidences.sum(axis=1)
    n_pairable = value_counts.sum()

    delta2 = _squared_differences(values, value_counts, level_)
    observed_disagreement = np.sum(coincidences * delta2)
    expected_disagreement = np.sum(np.outer(value_counts, value_counts) * delta2) / (n_pairable - 1)
    if expected_disagreement == 0:
        raise UndefinedMetricError("Krippendorff's alpha is undefined when all pairable ratings have the same value")
    return float(1.0 - observed_disagreement / expected_disagreement)


class ICCForm(StrEnum):
    """Shrout & Fleiss (1979) intraclass correlation forms: ``"model,unit"``.

    Model 1: each target rated by different random raters (one-way ANOVA). Model 2: the same random
    sample of raters rates every target, absolute agreement. Model 3: the same fixed raters,
    consistency (rater mean offsets ignored). Unit 1: reliability of one rater; ``k``: of the mean of
    the ``k`` raters. McGraw & Wong (1996) names: ICC(1) / ICC(A,1) / ICC(C,1) and the ``k`` versions.
    """

    ONE_ONE = "1,1"
    TWO_ONE = "2,1"
    THREE_ONE = "3,1"
    ONE_K = "1,k"
    TWO_K = "2,k"
    THREE_K = "3,k"


@dataclass(frozen=True)
class ICCResult:
    """An ICC with its F test (H0: ICC = 0) and confidence interval.

    Attributes:
        form: the Shrout & Fleiss form.
        value: the ICC.
        f_statistic: ``BMS / WMS`` for model 1, ``BMS / EMS`` for models 2 and 3.
        df_numerator: ``n - 1``.
        df_denominator: ``n (k - 1)`` for model 1, ``(n - 1)(k - 1)`` for models 2 and 3.
        p_value: one-sided p of the F test.
        ci_low, ci_high: confidence interval (Shrout & Fleiss 1979; Satterthwaite's approximation for model 2).
        confidence: the interval's nominal coverage, e.g. 0.95.
    """

    form: ICCForm
    value: float
    f_statistic: float
    df_numerator: int
    df_denominator: int
    p_value: float
    ci_low: float
    ci_high: float
    confidence: float


def _mean_squares(ratings: np.ndarray) -> tuple[float, float, float, float]:
    """Two-way ANOVA mean squares ``(BMS, WMS, JMS, EMS)`` of Shrout & Fleiss (1979), Table 1."""
    n_targets, n_raters = ratings.shape
    grand_mean = ratings.mean()
    ss_targets = n_raters * np.sum((ratings.mean(axis=1) - grand_mean) ** 2)
    ss_raters = n_targets * np.sum((ratings.mean(axis=0) - grand_mean) ** 2)
    ss_error = np.sum((ratings - grand_mean) ** 2) - ss_targets - ss_raters
    between_targets = ss_targets / (n_targets - 1)
    within_targets = (ss_raters + ss_error) / (n_targets * (n_raters - 1))
    between_raters = ss_raters / (n_raters - 1)
    residual = ss_error / ((n_targets - 1) * (n_raters - 1))
    return float(between_targets), float(within_targets), float(between_raters), float(residual)


def icc_with_ci(ratings: ArrayLike, form: ICCForm | str = ICCForm.TWO_ONE, *, confidence: float = 0.95) -> ICCResult:
    """Intraclass correlation (Shrout & Fleiss 1979) with its F test and confidence interval.

    With ``n`` targets, ``k`` raters and the mean squares between targets (BMS), within targets (WMS),
    between raters (JMS) and residual (EMS)::

        ICC(1,1) = (BMS - WMS) / (BMS + (k - 1) WMS)        ICC(1,k) = (BMS - WMS) / BMS
        ICC(2,1) = (BMS - EMS) / (BMS + (k - 1) EMS + k (JMS - EMS) / n)
        ICC(2,k) = (BMS - EMS) / (BMS + (JMS - EMS) / n)
        ICC(3,1) = (BMS - EMS) / (BMS + (k - 1) EMS)        ICC(3,k) = (BMS - EMS) / BMS

    Higher is better (1 = raters agree perfectly); it is negative when the ratings vary less between
    targets than the error does. Confidence limits (Shrout & Fleiss 1979): exact F-based limits for
    models 1 and 3, Satterthwaite's approximation for model 2; the limits of every ``k`` form are the
    Spearman-Brown step-up ``k r / (1 + (k - 1) r)`` of the single-rater limits (for model 2 this equals
    McGraw & Wong's 1996 ICC(A,k) interval). Matches R's ``psych::ICC`` (checked in the tests).

    When the error mean square is 0 (an exact fit, e.g. raters who agree perfectly), F is infinite,
    p is 0 and the interval is ``(1, 1)`` for models 1 and 3 (whose ICC is then exactly 1), ``nan`` for model 2.

    Reference: Shrout & Fleiss, "Intraclass correlations: uses in assessing rater reliability",
    Psychol. Bull. 86 (1979) 420-428.

    Args:
        ratings: ``(n_targets, n_raters)``, complete (no missing values), at least 2 x 2.
        form: one of ``"1,1"``, ``"2,1"``, ``"3,1"``, ``"1,k"``, ``"2,k"``, ``"3,k"``.
        confidence: coverage of the interval, in (0, 1).

    Returns:
        An :class:`ICCResult`.

    Raises:
        UndefinedMetricError: the targets' mean ratings do not vary (BMS = 0), so the ICC is 0/0.
    """
    form_ = ICCForm(form)
    x = _as_finite(ratings, "ratings (use complete cases: ICC here takes no missing values)")
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"ratings must be (n_targets, n_raters) with at least 2 of each, got shape {x.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    n, k = x.shape
    bms, wms, jms, ems = _mean_squares(x)
    model, unit = form_.value.split(",")

    if model == "1":
        numerator, denominator = bms - wms, (bms + (k - 1) * wms if unit == "1" else bms)
        error_ms, df_denominator = wms, n * (k - 1)
    elif model == "2":
        numerator = bms - ems
        denominator = bms + (k - 1) * ems + k * (jms - ems) / n if unit == "1" else bms + (jms - ems) / n
        error_ms, df_denominator = ems, (n - 1) * (k - 1)
    else:
        numerator, denominator = bms - ems, (bms + (k - 1) * ems if unit == "1" else bms)
        error_ms, df_denominator = ems, (n - 1) * (k - 1)
    # Every denominator is 0 only when BMS is: the targets cannot be told apart.
    if denominator == 0:
        raise UndefinedMetricError(
            f"ICC({form_.value}) is undefined for these ratings: the targets' mean ratings do not vary (BMS = 0)"
        )
    value = numerator / denominator
    df_numerator = n - 1
    tail = 1 - (1 - confidence) / 2

    if error_ms == 0:
        # An exact fit leaves no residual variance: F is infinite (nan if BMS is 0 too), and for models
        # 1 and 3 the ICC is exactly 1 with a collapsed interval; Satterthwaite's (model 2) is undefined.
        f_statistic = np.inf if bms > 0 else np.nan
        low = high = 1.0 if model != "2" else np.nan
    elif model == "2":
        f_statistic = bms / error_ms
        # Satterthwaite's degrees of freedom for the mixture of mean squares, evaluated at ICC(2,1).
        rho = (bms - ems) / (bms + (k - 1) * ems + k * (jms - ems) / n)
        raters_f = jms / ems
        spread = n * (1 + (k - 1) * rho) - k * rho
        df_satterthwaite = (k - 1) * (n - 1) * (k * rho * raters_f + spread) ** 2 / (
            (n - 1) * k**2 * rho**2 * raters_f**2 + spread**2
        )
        f_upper = stats.f.ppf(tail, n - 1, df_satterthwaite)
        f_lower = stats.f.ppf(tail, df_satterthwaite, n - 1)
        denominator = k * jms + (k * n - k - n) * ems
        low = n * (bms - f_upper * ems) / (f_upper * denominator + n * bms)
        high = n * (f_lower * bms - ems) / (denominator + n * f_lower * bms)
        if unit == "k":
            low, high = (bound * k / (1 + (k - 1) * bound) for bound in (low, high))
    else:
        f_statistic = bms / error_ms
        f_low = f_statistic / stats.f.ppf(tail, df_numerator, df_denominator)
        f_high = f_statistic * stats.f.ppf(tail, df_denominator, df_numerator)
        if unit == "1":
            low, high = (f_low - 1) / (f_low + k - 1), (f_high - 1) / (f_high + k - 1)
        else:
            low, high = 1 - 1 / f_low, 1 - 1 / f_high
    p_value = float(stats.f.sf(f_statistic, df_numerator, df_denominator))

    return ICCResult(
        form=form_,
        value=float(value),
        f_statistic=float(f_statistic),
        df_numerator=df_numerator,
        df_denominator=df_denominator,
        p_value=p_value,
        ci_low=float(low),
        ci_high=float(high),
        confidence=confidence,
    )


def icc(ratings: ArrayLike, form: ICCForm | str = ICCForm.TWO_ONE) -> float:
    """The intraclass correlation alone; see :func:`icc_with_ci` for formulas, test and interval.

    Args:
        ratings: ``(n_targets, n_raters)``, complete.
        form: Shrout & Fleiss form, default ``"2,1"`` (absolute agreement of one random rater).

    Returns:
        The ICC (at most 1; higher is better).
    """
    return icc_with_ci(ratings, form).value


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate with a confidence interval of nominal coverage ``confidence``."""

    estimate: float
    low: float
    high: float
    confidence: float


def bootstrap_ci(
    values: ArrayLike,
    statistic: Callable[..., float] = np.mean,
    *,
    n_resamples: int = 9999,
    confidence: float = 0.95,
    seed: int = 0,
) -> ConfidenceInterval:
    """Percentile bootstrap confidence interval of a statistic of one sample.

    Resamples ``values`` with replacement ``n_resamples`` times and takes the ``(1 - confidence) / 2``
    and ``(1 + confidence) / 2`` quantiles of the statistic over the resamples (Efron & Tibshirani,
    "An Introduction to the Bootstrap", 1993, ch. 13), through ``scipy.stats.bootstrap``. Fine for a
    mean of a few dozen ratings or more; it undercovers for very small samples.

    Args:
        values: ``(N,)`` finite observations, ``N >= 2``, e.g. one usefulness rating per reading.
        statistic: reduces a 1-D sample to a number. If it accepts ``axis`` (``np.mean``, ``np.median``)
            the resamples are evaluated in one vectorised call.
        n_resamples: number of bootstrap resamples.
        confidence: coverage of the interval, in (0, 1).
        seed: seed of the resampling; the same seed gives the same interval.

    Returns:
        A :class:`ConfidenceInterval` whose ``estimate`` is the statistic of ``values`` itself.
    """
    sample = _as_finite(values, "values")
    if sample.ndim != 1 or sample.size < 2:
        raise ValueError(f"values must be 1-D with at least 2 observations, got shape {sample.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    result = stats.bootstrap(
        (sample,),
        statistic,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return ConfidenceInterval(
        estimate=float(statistic(sample)), low=float(interval.low), high=float(interval.high), confidence=confidence
    )
