"""Known answers for core.preprocess: intensity rules, foreground masks, and the model grid round trip."""

import numpy as np
import pytest

from core.errors import EmptyImageError
from core.preprocess import (
    CT_WINDOWS,
    CTWindow,
    GridTransform,
    foreground_mask,
    from_model_grid,
    mask_from_model_grid,
    maps_to_volume,
    normalize_intensity,
    normalize_volume,
    to_model_batch,
    to_model_grid,
)
from core.types import Modality, Volume


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0)


def rectangle(shape: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[rows, cols] = True
    return mask


def disc(shape: tuple[int, ...], centre: tuple[float, ...], radius: float) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum((g - c) ** 2 for g, c in zip(grids, centre)) <= radius**2


# --- the model grid ----------------------------------------------------------------------------

# (shape, rectangle rows, rectangle cols): wide/tall, even/odd, padding on either axis. The
# rectangles near a corner are where a wrong pixel-centre convention (align_corners=True on
# one leg) shows: it moves them by 0.5-1 px there.
PHANTOMS = [
    ((200, 150), slice(40, 141), slice(30, 111)),
    ((200, 150), slice(150, 191), slice(105, 146)),
    ((97, 131), slice(20, 71), slice(33, 98)),
    ((97, 131), slice(60, 95), slice(95, 129)),
    ((131, 97), slice(11, 120), slice(25, 64)),
]


@pytest.mark.parametrize(("shape", "rows", "cols"), PHANTOMS)
def test_mask_round_trip_through_the_grid_keeps_shape_and_centre(shape, rows, cols):
    mask = rectangle(shape, rows, cols)
    grid, transform = to_model_grid(mask, 64)
    assert grid.shape == (64, 64) and grid.dtype == np.float32
    back = mask_from_model_grid(grid, transform)
    assert back.shape == shape and back.dtype == bool
    assert iou(back, mask) >= 0.95
    np.testing.assert_allclose(centroid(back), centroid(mask), atol=0.5)


def test_grid_transform_pads_symmetrically_with_the_odd_pixel_after():
    t = GridTransform.for_shape((97, 131), 64)
    assert t == GridTransform(original_shape=(97, 131), padded_side=131, pad_before=(17, 0), size=64)
    image = np.ones((97, 131), np.float32)
    padded = from_model_grid(to_model_grid(image, 131)[0], GridTransform((131, 131), 131, (0, 0), 131))
    # At size == padded_side the grid is the padded slice itself: 17 rows above, 17 below.
    assert padded[:17].max() == 0 and padded[17:114].min() == 1 and padded[114:].max() == 0


@pytest.mark.parametrize(
    ("shape", "pixel", "expected_grid"),
    [
        # 200x150 -> side 200, pad (0, 25), scale 200/64 = 3.125:
        # grid = (pixel + pad + 0.5) / 3.125 - 0.5
        ((200, 150), (100, 60), (31.66, 26.86)),
        # 97x131 -> side 131, pad (17, 0), scale 131/64 = 2.046875
        ((97, 131), (49, 13), (31.99, 6.10)),
    ],
)
def test_a_single_pixel_lands_where_the_geometry_says(shape, pixel, expected_grid):
    image = np.zeros(shape, np.float32)
    image[pixel] = 1.0
    grid, transform = to_model_grid(image, 64)
    np.testing.assert_allclose(transform.to_grid_coords(pixel), expected_grid, atol=0.01)
    np.testing.assert_allclose(transform.from_grid_coords(expected_grid), pixel, atol=0.02)
    # Forward: the brightest grid pixel is the one nearest the predicted position.
    peak = np.unravel_index(np.argmax(grid), grid.shape)
    assert peak == tuple(int(round(c)) for c in expected_grid)
    # Back: a single bright grid pixel peaks on the slice pixel nearest its predicted position.
    spot = np.zeros((64, 64), np.float32)
    spot[peak] = 1.0
    back = from_model_grid(spot, transform)
    expected_back = np.round(transform.from_grid_coords(peak)).astype(int)
    assert np.unravel_index(np.argmax(back), back.shape) == tuple(expected_back)
    assert np.abs(expected_back - np.array(pixel)).max() <= 1  # one grid pixel is ~2-3 slice pixels


def test_a_map_computed_on_the_grid_lands_on_the_original_pixels():
    shape = (181, 217)
    truth = rectangle(shape, slice(30, 121), slice(50, 161)) | disc(shape, (140, 60), 25)
    image = np.where(truth, 0.8, 0.1).astype(np.float32)
    grid, transform = to_model_grid(image, 128)
    detected_on_grid = grid > 0.45  # a "detector" that thresholds the grid image
    back = mask_from_model_grid(detected_on_grid, transform)
    assert iou(back, truth) >= 0.95


def test_same_shape_as_the_grid_is_the_identity_both_ways():
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    grid, transform = to_model_grid(image, 64)
    assert np.array_equal(grid, image)
    assert transform == GridTransform((64, 64), 64, (0, 0), 64)
    assert np.array_equal(from_model_grid(image, transform), image)
    mask = image > 0.5
    assert np.array_equal(mask_from_model_grid(mask, transform), mask)
    assert np.array_equal(to_model_grid(mask, 64, order=0)[0], mask)


def test_nearest_neighbour_keeps_bool_masks_bool():
    mask = rectangle((90, 60), slice(20, 70), slice(10, 50))
    grid, transform = to_model_grid(mask, 32, order=0)
    assert grid.dtype == bool
    back = from_model_grid(grid, transform, order=0)
    assert back.dtype == bool and back.shape == mask.shape
    assert iou(back, mask) >= 0.85  # nearest neighbour: edges move by up to a grid pixel (~3 px)


def test_grid_functions_reject_wrong_shapes():
    with pytest.raises(ValueError, match="2-D"):
        to_model_grid(np.zeros((4, 4, 4)), 8)
    _, transform = to_model_grid(np.zeros((10, 12)), 8)
    with pytest.raises(ValueError, match="grid"):
        from_model_grid(np.zeros((9, 9)), transform)
    with pytest.raises(ValueError, match="order"):
        to_model_grid(np.zeros((10, 12)), 8, order=3)


def test_volume_round_trip_recovers_the_cube_at_the_same_voxels():
    array = np.zeros((40, 50, 6), np.float32)
    array[disc(array.shape[:2], (20, 25), 18)] = 100.0  # a "head" around the cube, on every slice
    cube = np.zeros(array.shape, bool)
    cube[8:27, 30:42, 1:5] = True  # off-centre, so a flipped or transposed slice would miss
    array[cube] = 300.0
    array += np.random.default_rng(1).normal(0, 5, array.shape).astype(np.float32)
    volume = normalize_volume(Volume(array, (1.0, 1.0, 2.0), np.eye(4), Modality.MR))
    batch, transforms = to_model_batch(volume, 64)
    assert batch.shape == (6, 1, 64, 64) and batch.dtype == np.float32
    recovered = maps_to_volume(batch, transforms, volume, as_mask=True)
    assert recovered.shape == array.shape
    assert iou(recovered, cube) >= 0.95
    # A continuous map comes back in the array layout, too.
    intensities = maps_to_volume(batch[:, 0], transforms, volume)
    assert intensities.shape == array.shape and intensities.dtype == np.float32
    assert intensities[cube].mean() > 0.9 and intensities[~cube].mean() < 0.1


def test_a_2d_volume_is_a_batch_of_one():
    image = np.zeros((30, 20), np.float32)
    image[5:15, 5:10] = 1.0
    volume = Volume(image, (1.0, 1.0), np.eye(4), Modality.XRAY)
    batch, transforms = to_model_batch(volume, 16)
    assert batch.shape == (1, 1, 16, 16)
    assert iou(maps_to_volume(batch, transforms, volume, as_mask=True), image > 0.5) >= 0.9
    with pytest.raises(ValueError, match="slices"):
        maps_to_volume(np.zeros((2, 16, 16)), transforms * 2, volume)


# --- intensities ------------------------------------------------------------------------------


def test_ct_brain_window_known_values():
    hu = np.array([[0.0, 40.0, 80.0], [-1000.0, 120.0, 20.0]])
    out = normalize_intensity(hu, Modality.CT)
    np.testing.assert_array_equal(out, [[0.0, 0.5, 1.0], [0.0, 1.0, 0.25]])
    assert out.dtype == np.float32
    lung = normalize_intensity(hu, Modality.CT, window=CT_WINDOWS[CTWindow.LUNG])
    np.testing.assert_allclose(lung[1, 0], (-1000 + 1350) / 1500)  # low = -600 - 750 = -1350 HU
    assert CT_WINDOWS["bone"] is CT_WINDOWS[CTWindow.BONE]


def test_mr_percentiles_come_from_the_foreground():
    image = np.zeros((60, 60), np.float32)
    inside = rectangle(image.shape, slice(10, 50), slice(10, 50))
    image[inside] = np.linspace(100.0, 200.0, inside.sum())  # 1600 values, uniform ramp
    out = normalize_intensity(image, Modality.MR, foreground=inside)
    lo, hi = np.percentile(image[inside], (1, 99))
    assert (lo, hi) == pytest.approx((101.0, 199.0))
    ramp = out[inside]
    np.testing.assert_allclose(ramp, np.clip((image[inside] - lo) / (hi - lo), 0, 1), atol=1e-6)
    assert np.percentile(ramp, 1) == pytest.approx(0.0, abs=1e-5)  # float32 arithmetic
    assert np.percentile(ramp, 99) == pytest.approx(1.0, abs=1e-5)
    assert out[~inside].max() == 0.0  # background stays at 0 (clipped, not re-scaled)
    # The default foreground finds the square (Otsu after smoothing loses the dimmest edge row),
    # so the answer barely changes without it.
    assert iou(foreground_mask(image, Modality.MR), inside) >= 0.95
    np.testing.assert_allclose(normalize_intensity(image, Modality.MR), out, atol=0.03)


def test_3d_statistics_are_shared_across_slices():
    volume = np.zeros((30, 30, 3), np.float32)
    inside = np.zeros(volume.shape, bool)
    inside[5:25, 5:25, :] = True
    ramp = np.linspace(0.0, 20.0, 400).reshape(20, 20)
    for k, offset in enumerate((100.0, 150.0, 200.0)):
        volume[5:25, 5:25, k] = offset + ramp
    out = normalize_intensity(volume, Modality.MR, foreground=inside)
    lo, hi = np.percentile(volume[inside], (1, 99))
    np.testing.assert_allclose(out, np.clip((volume - lo) / (hi - lo), 0, 1), atol=1e-6)
    means = [out[5:25, 5:25, k].mean() for k in range(3)]
    assert means[0] < means[1] < means[2]  # per-slice normalisation would make them equal
    np.testing.assert_allclose(means[2] - means[1], 50.0 / (hi - lo), atol=1e-4)


def test_xray_uses_whole_image_percentiles():
    image = np.arange(1000, dtype=np.float32).reshape(25, 40)
    out = normalize_intensity(image, Modality.XRAY)
    lo, hi = np.percentile(image, (0.5, 99.5))
    np.testing.assert_allclose(out, np.clip((image - lo) / (hi - lo), 0, 1), atol=1e-6)
    assert out.min() == 0.0 and out.max() == 1.0


@pytest.mark.parametrize("modality", list(Modality))
def test_constant_input_is_a_clear_value_error(modality):
    with pytest.raises(ValueError, match="same value"):
        normalize_intensity(np.full((8, 8), 7.0), modality)
    with pytest.raises(EmptyImageError):
        foreground_mask(np.full((4, 4, 4), 7.0), modality)


def test_bad_arguments_are_rejected():
    image = np.arange(64.0).reshape(8, 8)
    with pytest.raises(ValueError, match="percentiles"):
        normalize_intensity(image, Modality.MR, percentiles=(99, 1))
    with pytest.raises(ValueError, match="empty"):
        normalize_intensity(image, Modality.MR, foreground=np.zeros((8, 8), bool))
    with pytest.raises(ValueError, match="no contrast"):  # a flat foreground
        normalize_intensity(image, Modality.MR, foreground=image == 5)
    with pytest.raises(ValueError, match="NaN"):
        normalize_intensity(np.where(image > 3, image, np.nan), Modality.MR)


def test_mr_foreground_is_the_noisy_disc_with_its_hole_filled():
    rng = np.random.default_rng(0)
    shape = (96, 96)
    head = disc(shape, (50, 45), 30)
    hole = disc(shape, (50, 45), 10)  # a dark "ventricle"
    image = np.where(head & ~hole, 100.0, 0.0) + rng.normal(0, 10, shape)
    image[5, 5] = 400.0  # a bright speck outside: not the largest component
    mask = foreground_mask(image, Modality.MR)
    assert mask.dtype == bool
    assert iou(mask, head) >= 0.95
    assert mask[hole].all() and not mask[5, 5]


def test_ct_foreground_is_the_body_with_the_lungs_filled():
    shape = (80, 100)
    body = disc(shape, (40, 50), 30)
    lungs = disc(shape, (40, 38), 8) | disc(shape, (40, 62), 8)
    hu = np.full(shape, -1000.0)
    hu[body] = 40.0
    hu[lungs] = -850.0
    hu[75:78, 5:95] = 200.0  # the table, separate from the body
    mask = foreground_mask(hu, Modality.CT)
    assert np.array_equal(mask, body)


def test_xray_foreground_drops_only_the_darkest_percent():
    image = np.arange(10_000, dtype=float).reshape(100, 100)
    assert foreground_mask(image, Modality.XRAY).sum() == pytest.approx(9_900, abs=1)
    # A rule that finds nothing still returns a non-empty mask for a non-constant image.
    almost_flat = np.zeros((20, 20))
    almost_flat[3, 4] = -1.0
    assert foreground_mask(almost_flat, Modality.XRAY).sum() == 399
    assert foreground_mask(np.full((20, 20), -900.0) + (np.arange(20) == 3), Modality.CT).any()


def test_mni152_template_normalises_into_unit_range_and_its_mask_covers_the_brain():
    datasets = pytest.importorskip("nilearn.datasets")
    template = datasets.load_mni152_template()
    brain = datasets.load_mni152_brain_mask()
    assert template.shape == brain.shape  # same grid: no resampling needed
    # Every second voxel along each axis keeps it fast; both arrays are decimated alike, so they stay aligned.
    t1 = np.asarray(template.dataobj, dtype=np.float32)[::2, ::2, ::2]
    reference = np.asarray(brain.dataobj)[::2, ::2, ::2] > 0
    mask = foreground_mask(t1, Modality.MR)
    assert dice(mask, reference) >= 0.9
    out = normalize_intensity(t1, Modality.MR, foreground=mask)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    assert np.median(out[reference]) > 0.3  # brain tissue is not squashed into the background
