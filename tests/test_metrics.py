"""core.metrics against scikit-learn, the krippendorff package, published worked examples and hand counts."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from scipy import stats
from skimage.measure import label as skimage_label
from sklearn.metrics import (
    average_precision_score,
    cohen_kappa_score,
    f1_score,
    roc_auc_score,
    roc_curve,
)

from core.metrics import (
    ICCForm,
    MeasurementLevel,
    UndefinedMetricError,
    aupro,
    auroc_standard_error,
    bootstrap_ci,
    cohen_kappa,
    dice,
    f1_at_threshold,
    f1_max,
    icc,
    icc_with_ci,
    image_auprc,
    image_auroc,
    iou,
    krippendorff_alpha,
    pixel_auroc,
    pointing_game,
    pro_curve_points,
    roc_curve_points,
)


def random_detection_data(seed: int, n: int = 200, decimals: int | None = None):
    """Labels with both classes and scores that separate them partly; rounding creates ties."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    labels[:2] = (0, 1)
    scores = rng.normal(size=n) + labels
    if decimals is not None:
        scores = np.round(scores, decimals)
    return labels, scores


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------


def test_image_auroc_hand_computed():
    # Pairs (anomalous, normal): (0.35 > 0.1), (0.35 < 0.4), (0.8 > 0.1), (0.8 > 0.4): 3 of 4.
    assert image_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_auroc_standard_error_reproduces_hanley_and_mcneil():
    # By hand at chance, 27 + 27 images: Q1 = Q2 = 1/3, so SE^2 = (1/4 + 2 * 26/12) / 729.
    assert auroc_standard_error(0.5, 27, 27) == pytest.approx(np.sqrt((0.25 + 52 / 12) / 729), rel=1e-12)
    # Hanley & McNeil (1982), Radiology 143:29-36, the CT example: 58 abnormal and 51 normal
    # patients, area 0.893, SE 0.032 from the ratings' own Q1, Q2; the exponential approximation
    # used here gives 0.0312.
    assert auroc_standard_error(0.893, 58, 51) == pytest.approx(0.032, abs=1e-3)
    with pytest.raises(UndefinedMetricError):
        auroc_standard_error(0.5, 0, 10)


def test_image_auroc_counts_ties_as_one_half():
    assert image_auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert image_auroc([0, 0, 1], [0.2, 0.5, 0.5]) == pytest.approx(0.75)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("decimals", [None, 1])
def test_detection_metrics_match_sklearn(seed, decimals):
    labels, scores = random_detection_data(seed, decimals=decimals)
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert image_auprc(labels, scores) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    for threshold in np.quantile(scores, [0.1, 0.5, 0.9]):
        expected = f1_score(labels, scores >= threshold)
        assert f1_at_threshold(labels, scores, threshold) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_roc_curve_points_match_sklearn(seed):
    labels, scores = random_detection_data(seed, decimals=1)
    fpr, tpr, thresholds = roc_curve_points(labels, scores)
    sk_fpr, sk_tpr, sk_thresholds = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_array_equal(thresholds, sk_thresholds)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_f1_max_is_the_best_f1_over_all_thresholds(seed):
    labels, scores = random_detection_data(seed, n=120, decimals=1)
    best, threshold = f1_max(labels, scores)
    by_threshold = {t: f1_score(labels, scores >= t) for t in np.unique(scores)}
    assert best == pytest.approx(max(by_threshold.values()), abs=1e-12)
    assert by_threshold[threshold] == pytest.approx(best, abs=1e-12)
    assert f1_at_threshold(labels, scores, threshold) == pytest.approx(best, abs=1e-12)


def test_f1_max_hand_computed_and_ties_take_the_lowest_threshold():
    # t=4: TP 1, FP 0 -> 2/3; t=3: 2/4; t=2: 2/5; t=1: TP 2, FP 2 -> 4/6 = 2/3 (tie with t=4).
    best, threshold = f1_max([1, 0, 0, 1], [4, 3, 2, 1])
    assert best == pytest.approx(2 / 3)
    assert threshold == 1.0
    best, threshold = f1_max([1, 0, 1, 0], [4, 3, 2, 1])  # t=2: TP 2, FP 1 -> 0.8
    assert (best, threshold) == (pytest.approx(0.8), 2.0)


@pytest.mark.parametrize("metric", [image_auroc, image_auprc, f1_max, roc_curve_points])
@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1]])
def test_one_class_is_undefined(metric, labels):
    with pytest.raises(UndefinedMetricError, match="only one class"):
        metric(labels, [0.1, 0.2, 0.3])
    assert issubclass(UndefinedMetricError, ValueError)


def test_f1_at_threshold_needs_an_anomalous_label():
    with pytest.raises(UndefinedMetricError, match="anomalous"):
        f1_at_threshold([0, 0], [0.1, 0.9], 0.5)
    assert f1_at_threshold([1, 1], [0.1, 0.9], 0.5) == pytest.approx(2 / 3)


def test_detection_input_errors():
    with pytest.raises(ValueError, match="0/1"):
        image_auroc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        image_auroc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="equal length"):
        image_auroc([0, 1, 1], [0.1, 0.2])


# --------------------------------------------------------------------------------------------
# Dice, IoU, pixel AUROC
# --------------------------------------------------------------------------------------------


def square(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_dice_and_iou_of_two_overlapping_squares():
    pred, target = square(10, 0, 0, 4), square(10, 2, 2, 4)  # 16 px each, 2x2 = 4 px overlap
    assert dice(pred, target) == pytest.approx(2 * 4 / (16 + 16))
    assert iou(pred, target) == pytest.approx(4 / (16 + 16 - 4))
    assert dice(pred, pred) == 1.0 and iou(pred, pred) == 1.0
    assert dice(pred, square(10, 6, 6, 4)) == 0.0


def test_both_empty_gives_empty_value():
    empty = np.zeros((5, 5), dtype=bool)
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0
    assert dice(empty, empty, empty_value=0.0) == 0.0
    assert np.isnan(iou(empty, empty, empty_value=np.nan))
    assert dice(empty, square(5, 0, 0, 2)) == 0.0  # only one empty: a plain miss


def test_dice_and_iou_per_image_and_pooled_over_a_batch():
    empty = np.zeros((10, 10), dtype=bool)
    pred = np.stack([square(10, 0, 0, 4), empty, empty])
    target = np.stack([square(10, 2, 2, 4), empty, square(10, 0, 0, 4)])
    np.testing.assert_allclose(dice(pred, target, axis=(1, 2)), [0.25, 1.0, 0.0])
    np.testing.assert_allclose(iou(pred, target, axis=(1, 2)), [4 / 28, 1.0, 0.0])
    assert dice(pred, target) == pytest.approx(2 * 4 / (16 + 16 + 16))  # pooled over every pixel
    assert np.isnan(dice(pred, target, axis=(1, 2), empty_value=np.nan)[1])


def test_iou_equals_dice_over_two_minus_dice():
    rng = np.random.default_rng(0)
    pred, target = rng.random((6, 16, 16)) > 0.6, rng.random((6, 16, 16)) > 0.7
    d, j = dice(pred, target, axis=(1, 2)), iou(pred, target, axis=(1, 2))
    np.testing.assert_allclose(j, d / (2 - d))


def test_dice_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        dice(np.zeros((4, 4)), np.zeros((4, 5)))


@pytest.mark.parametrize("seed", [0, 1])
def test_pixel_auroc_matches_sklearn_on_flattened_arrays(seed):
    rng = np.random.default_rng(seed)
    masks = rng.random((4, 16, 16)) > 0.8
    maps = np.round(rng.normal(size=masks.shape) + masks, 2)
    assert pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)


def test_pixel_auroc_without_anomalous_pixels_is_undefined():
    with pytest.raises(UndefinedMetricError, match="pixels"):
        pixel_auroc(np.ones((3, 4, 4)), np.zeros((3, 4, 4), dtype=bool))


# --------------------------------------------------------------------------------------------
# AUPRO and the pointing game
# --------------------------------------------------------------------------------------------


def two_region_case(second_pixel_score: float):
    """10x10 image: region A (2x2 = 4 px) at 0.9, region B (1x2 = 2 px) with one pixel at 0.85.

    The 94 normal pixels take distinct values evenly spread over [0.1, 0.8].
    """
    masks = np.zeros((10, 10), dtype=bool)
    masks[1:3, 1:3] = True  # A
    masks[6, 6:8] = True  # B, far from A
    maps = np.zeros((10, 10))
    maps[~masks] = np.linspace(0.1, 0.8, 94)
    maps[1:3, 1:3] = 0.9
    maps[6, 6] = 0.85
    maps[6, 7] = second_pixel_score
    return maps, masks


def test_aupro_hand_computed_weighs_regions_not_pixels():
    # Before any false positive: A fully found (1), B half found (1/2): PRO = 3/4 (pixel TPR would be 5/6).
    # B's second pixel scores below every normal pixel, so PRO stays 3/4 up to FPR = 1.
    maps, masks = two_region_case(second_pixel_score=0.05)
    assert aupro(maps, masks) == pytest.approx(0.75)
    assert aupro(maps, masks, fpr_limit=1.0) == pytest.approx(0.75)


def test_aupro_hand_computed_with_a_step_inside_the_limit():
    # B's second pixel ranks just below the 14 highest normal pixels: PRO steps from 3/4 to 1 at FPR = 14/94.
    maps, masks = two_region_case(second_pixel_score=0.0)
    normal_values = np.sort(maps[~masks])[::-1]
    maps[6, 7] = (normal_values[13] + normal_values[14]) / 2
    step = 14 / 94
    expected = (0.75 * step + 1.0 * (0.3 - step)) / 0.3
    assert aupro(maps, masks) == pytest.approx(expected)


def test_aupro_of_a_perfect_map_is_one_and_ignores_monotone_rescaling():
    rng = np.random.default_rng(0)
    masks = np.zeros((3, 12, 12), dtype=bool)
    masks[0, 2:5, 2:6] = True
    masks[1, 8:11, 1:3] = True
    maps = rng.random(masks.shape) * 0.5 + masks * 0.6
    assert aupro(maps, masks) == pytest.approx(1.0)
    noisy = rng.random(masks.shape) + masks * 0.3
    assert aupro(np.exp(3 * noisy), masks) == pytest.approx(aupro(noisy, masks))


def test_aupro_uses_8_connectivity_within_images_only():
    masks = np.zeros((2, 6, 6), dtype=bool)
    masks[0, 1, 1] = masks[0, 2, 2] = masks[0, 2, 3] = True  # (1, 1) touches the others only diagonally
    maps = np.zeros(masks.shape)
    maps[0, 1, 1] = 1.0
    _, pro, _ = pro_curve_points(masks=masks[:1], maps=maps[:1])
    assert pro[1] == pytest.approx(1 / 3)  # one region of 3 px; 4-connectivity would give (1 + 0) / 2
    masks[1, 1, 1] = True  # a second image with a region at the same place
    _, pro, _ = pro_curve_points(maps, masks)
    assert pro[1] == pytest.approx((1 / 3 + 0) / 2)  # joined across images it would be 1/4


def reference_aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float, connectivity: int) -> float:
    """Slow and plain: threshold at every distinct value, label regions with scikit-image, integrate."""
    regions = []  # (image index, boolean region mask)
    for image, mask in enumerate(masks):
        labelled = skimage_label(mask, connectivity=connectivity)
        regions += [(image, labelled == index) for index in range(1, labelled.max() + 1)]
    normal = ~masks
    points = [(0.0, 0.0)]
    for threshold in np.unique(maps)[::-1]:
        predicted = maps >= threshold
        fpr = (predicted & normal).sum() / normal.sum()
        pro = np.mean([predicted[image][region].mean() for image, region in regions])
        points.append((fpr, pro))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:  # clip the last segment at the limit
            y1 = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            x1 = fpr_limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


def random_blob_masks(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    masks = np.zeros(shape, dtype=bool)
    for image in masks:
        for _ in range(rng.integers(0, 3)):
            corner = [rng.integers(0, s - 2) for s in image.shape]
            sides = [rng.integers(1, 5) for _ in image.shape]
            image[tuple(slice(c, c + s) for c, s in zip(corner, sides))] = True
    masks[0].flat[rng.integers(0, masks[0].size)] = True  # at least one region
    return masks


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("fpr_limit", [0.05, 0.3, 1.0])
def test_aupro_matches_a_slow_reference_on_random_2d_data(seed, fpr_limit):
    rng = np.random.default_rng(seed)
    masks = random_blob_masks(rng, (3, 12, 12))
    maps = np.round(rng.random(masks.shape) + 0.4 * masks, 2)  # rounding makes ties
    expected = reference_aupro(maps, masks, fpr_limit, connectivity=2)
    assert aupro(maps, masks, fpr_limit=fpr_limit) == pytest.approx(expected, abs=1e-9)


def test_aupro_matches_the_reference_on_3d_volumes():
    rng = np.random.default_rng(5)
    masks = random_blob_masks(rng, (2, 6, 6, 5))
    maps = np.round(rng.random(masks.shape) + 0.5 * masks, 2)
    expected = reference_aupro(maps, masks, 0.3, connectivity=3)
    assert aupro(maps, masks, image_ndim=3) == pytest.approx(expected, abs=1e-9)


def test_aupro_undefined_and_bad_input():
    with pytest.raises(UndefinedMetricError, match="region"):
        aupro(np.ones((2, 4, 4)), np.zeros((2, 4, 4)))
    with pytest.raises(UndefinedMetricError, match="normal pixel"):
        aupro(np.ones((4, 4)), np.ones((4, 4)))
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(np.ones((4, 4)), square(4, 0, 0, 2), fpr_limit=0.0)


def test_pointing_game_known_answer():
    masks = np.zeros((4, 8, 8), dtype=bool)
    maps = np.zeros((4, 8, 8))
    masks[0, 2:4, 2:4] = True
    maps[0, 3, 3] = 1.0  # peak inside: hit
    masks[1, 2:4, 2:4] = True
    maps[1, 6, 6] = 1.0  # peak outside: miss
    maps[2, 0, 0] = 1.0  # no mask: not counted
    masks[3, 5:8, 0:2] = True
    maps[3] = np.arange(64).reshape(8, 8)[:, ::-1]  # peak at (7, 0), inside: hit
    assert pointing_game(maps, masks) == pytest.approx(2 / 3)
    assert pointing_game(maps[0], masks[0]) == 1.0
    assert pointing_game(maps[:2], masks[:2], image_ndim=3) == 1.0  # one volume: its peak (0, 3, 3) is inside


def test_pointing_game_without_anomalous_images_is_undefined():
    with pytest.raises(UndefinedMetricError, match="non-empty mask"):
        pointing_game(np.ones((2, 4, 4)), np.zeros((2, 4, 4), dtype=bool))


# --------------------------------------------------------------------------------------------
# Cohen's kappa
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_matches_sklearn_on_ordinal_ratings(seed, weights):
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 6, 80)
    b = np.clip(a + rng.integers(-2, 3, 80), 1, 5)  # correlated readers
    assert cohen_kappa(a, b, weights=weights) == pytest.approx(cohen_kappa_score(a, b, weights=weights), abs=1e-12)
    scale = [0, 1, 2, 3, 4, 5, 6]  # unused categories change weighted kappa: positions shift
    assert cohen_kappa(a, b, weights=weights, labels=scale) == pytest.approx(
        cohen_kappa_score(a, b, weights=weights, labels=scale), abs=1e-12
    )


def ratings_from_table(table: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Two readers' ratings that reproduce a contingency table (rows: reader A, columns: reader B)."""
    cells = [(i, j, count) for i, row in enumerate(table) for j, count in enumerate(row)]
    a = np.repeat([i for i, _, _ in cells], [c for *_, c in cells])
    b = np.repeat([j for _, j, _ in cells], [c for *_, c in cells])
    return a, b


def test_cohen_kappa_published_examples():
    # R irr::kappa2 outputs in the RExRepos "interRaterICC" page (github.com/dwoll/RExRepos):
    # unweighted kappa 0.429 on a 3x3 table, "equal" (= linear) weighted kappa 0.316 on a 6x6 table.
    a, b = ratings_from_table([[53, 5, 2], [11, 14, 5], [1, 6, 3]])
    assert cohen_kappa(a, b) == pytest.approx(0.429, abs=5e-4)
    a, b = ratings_from_table(
        [[5, 8, 1, 2, 4, 2], [3, 5, 3, 5, 5, 0], [1, 2, 6, 11, 2, 1], [0, 1, 5, 4, 3, 3], [0, 0, 1, 2, 5, 2],
         [0, 0, 1, 2, 1, 4]]
    )
    assert cohen_kappa(a, b, weights="linear") == pytest.approx(0.316, abs=5e-4)


def test_cohen_kappa_errors():
    with pytest.raises(ValueError, match="not among labels"):
        cohen_kappa([1, 2, 3], [1, 2, 2], labels=[1, 2])
    with pytest.raises(UndefinedMetricError, match="single category"):
        cohen_kappa([2, 2, 2], [2, 2, 2])
    with pytest.raises(ValueError):
        cohen_kappa([1, 2], [1, 2], weights="cubic")


# --------------------------------------------------------------------------------------------
# Krippendorff's alpha
# --------------------------------------------------------------------------------------------

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers x 12 units.
KRIPPENDORFF_2011 = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, np.nan, np.nan, np.nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, np.nan, 3],
        [np.nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, np.nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, np.nan],
    ]
)


@pytest.mark.parametrize(
    ("level", "published"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)]
)
def test_krippendorff_alpha_published_example(level, published):
    value = krippendorff_alpha(KRIPPENDORFF_2011, level)
    assert value == pytest.approx(published, abs=5e-4)
    assert value == pytest.approx(krippendorff.alpha(KRIPPENDORFF_2011, level_of_measurement=level), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("level", list(MeasurementLevel))
def test_krippendorff_alpha_matches_the_package_with_missing_values(seed, level):
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 6, 30)
    data = np.clip(truth + rng.integers(-1, 2, (5, 30)), 1, 6).astype(float)
    data[rng.random(data.shape) < 0.35] = np.nan  # some units end up with one rating: not pairable
    expected = krippendorff.alpha(data, level_of_measurement=level.value)
    assert krippendorff_alpha(data, level) == pytest.approx(expected, abs=1e-12)


def test_krippendorff_alpha_undefined_cases():
    with pytest.raises(UndefinedMetricError, match="two or more raters"):
        krippendorff_alpha([[1, np.nan], [np.nan, 2]], "nominal")
    with pytest.raises(UndefinedMetricError, match="same value"):
        krippendorff_alpha([[3, 3, 3], [3, 3, np.nan]], "interval")
    with pytest.raises(ValueError):
        krippendorff_alpha(KRIPPENDORFF_2011, "cardinal")


# --------------------------------------------------------------------------------------------
# ICC
# --------------------------------------------------------------------------------------------

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])


@pytest.mark.parametrize(
    ("form", "published"),
    [("1,1", 0.17), ("2,1", 0.29), ("3,1", 0.71), ("1,k", 0.44), ("2,k", 0.62), ("3,k", 0.91)],
)
def test_icc_shrout_fleiss_published_values(form, published):
    assert round(icc(SHROUT_FLEISS, form), 2) == published


# R psych::ICC on the same data, as printed in the RExRepos "interRaterICC" page (github.com/dwoll/RExRepos):
# lower bounds to 3 decimals, upper bounds to 2, p to 5 significant digits.
PSYCH_ICC = {
    "1,1": (1.8, 0.16477, -0.133, 0.72),
    "2,1": (11.0, 0.00013, 0.019, 0.76),
    "3,1": (11.0, 0.00013, 0.342, 0.95),
    "1,k": (1.8, 0.16477, -0.884, 0.91),
    "2,k": (11.0, 0.00013, 0.071, 0.93),
    "3,k": (11.0, 0.00013, 0.676, 0.99),
}


@pytest.mark.parametrize("form", list(PSYCH_ICC))
def test_icc_test_and_interval_match_r_psych(form):
    f_statistic, p_value, low, high = PSYCH_ICC[form]
    result = icc_with_ci(SHROUT_FLEISS, form)
    assert result.form is ICCForm(form)
    assert round(result.f_statistic, 1) == f_statistic
    assert result.p_value == pytest.approx(p_value, rel=5e-3 if p_value > 0.001 else 5e-2)
    assert round(result.ci_low, 3) == low
    assert round(result.ci_high, 2) == high
    assert result.ci_low < result.value < result.ci_high


def test_icc_mean_squares_and_interval_by_hand():
    # Mean squares of the example as printed by Shrout & Fleiss: BMS 11.24, WMS 6.26, JMS 32.49, EMS 1.02.
    x = SHROUT_FLEISS.astype(float)
    n, k = x.shape
    bms = k * x.mean(axis=1).var(ddof=1)
    jms = n * x.mean(axis=0).var(ddof=1)
    wms = ((x - x.mean(axis=1, keepdims=True)) ** 2).sum() / (n * (k - 1))
    ems = ((x - x.mean(axis=1, keepdims=True) - x.mean(axis=0) + x.mean()) ** 2).sum() / ((n - 1) * (k - 1))
    assert [round(v, 2) for v in (bms, wms, jms, ems)] == [11.24, 6.26, 32.49, 1.02]

    # ICC(3,1): F = BMS/EMS on (n-1, (n-1)(k-1)) df; F_L = F / F_0.975(df1, df2), F_U = F * F_0.975(df2, df1).
    result = icc_with_ci(x, "3,1", confidence=0.9)
    df1, df2 = n - 1, (n - 1) * (k - 1)
    f_low = bms / ems / stats.f.ppf(0.95, df1, df2)
    f_high = bms / ems * stats.f.ppf(0.95, df2, df1)
    assert (result.df_numerator, result.df_denominator) == (df1, df2)
    assert result.ci_low == pytest.approx((f_low - 1) / (f_low + k - 1))
    assert result.ci_high == pytest.approx((f_high - 1) / (f_high + k - 1))
    assert result.p_value == pytest.approx(stats.f.sf(bms / ems, df1, df2))


def test_icc_average_forms_relate_to_single_forms():
    rng = np.random.default_rng(0)
    ratings = rng.normal(size=(40, 1)) + rng.normal(scale=0.7, size=(40, 3)) + [0.0, 0.3, -0.2]
    k = ratings.shape[1]
    # ICC(3,k) is Cronbach's alpha of the raters.
    cronbach = k / (k - 1) * (1 - ratings.var(axis=0, ddof=1).sum() / ratings.sum(axis=1).var(ddof=1))
    assert icc(ratings, "3,k") == pytest.approx(cronbach)
    # The k forms (value and limits) are the Spearman-Brown step-up of the single-rater forms.
    single, average = icc_with_ci(ratings, "2,1"), icc_with_ci(ratings, "2,k")

    def step_up(r):
        return k * r / (1 + (k - 1) * r)

    for attribute in ("value", "ci_low", "ci_high"):
        assert getattr(average, attribute) == pytest.approx(step_up(getattr(single, attribute)))


def test_icc_undefined_and_bad_input():
    with pytest.raises(UndefinedMetricError, match="do not vary"):
        icc(np.full((4, 3), 2.0))
    with pytest.raises(ValueError, match="missing"):
        icc([[1, np.nan], [2, 3]])
    with pytest.raises(ValueError):
        icc(SHROUT_FLEISS, "2,2")


def test_icc_of_perfect_agreement_is_one():
    ratings = np.array([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [4.0, 4.0, 4.0]])
    for form in ICCForm:
        result = icc_with_ci(ratings, form)
        assert result.value == 1.0 and result.f_statistic == np.inf and result.p_value == 0.0
        if form.value.startswith("2"):
            assert np.isnan(result.ci_low) and np.isnan(result.ci_high)
        else:
            assert (result.ci_low, result.ci_high) == (1.0, 1.0)


# --------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------


def test_bootstrap_ci_is_deterministic_and_covers_the_mean():
    values = np.random.default_rng(0).integers(1, 6, 40).astype(float)  # e.g. 1-5 usefulness ratings
    first, again = bootstrap_ci(values, seed=3), bootstrap_ci(values, seed=3)
    assert first == again
    assert bootstrap_ci(values, seed=4) != first
    assert first.estimate == pytest.approx(values.mean())
    assert first.low < values.mean() < first.high
    assert first.confidence == 0.95


def test_bootstrap_ci_narrows_with_more_data_and_agrees_with_normal_theory():
    rng = np.random.default_rng(1)
    small, large = rng.normal(size=25), rng.normal(size=2500)
    small_ci, large_ci = bootstrap_ci(small, n_resamples=2000), bootstrap_ci(large, n_resamples=2000)
    assert large_ci.high - large_ci.low < (small_ci.high - small_ci.low) / 5
    normal_width = 2 * stats.norm.ppf(0.975) * large.std(ddof=1) / np.sqrt(large.size)
    assert large_ci.high - large_ci.low == pytest.approx(normal_width, rel=0.1)


def test_bootstrap_ci_with_another_statistic_and_level():
    values = np.arange(1.0, 31.0)
    wide, narrow = bootstrap_ci(values, np.median, confidence=0.99), bootstrap_ci(values, np.median, confidence=0.5)
    assert wide.estimate == 15.5
    assert wide.low <= narrow.low <= 15.5 <= narrow.high <= wide.high
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_ci([1.0])

