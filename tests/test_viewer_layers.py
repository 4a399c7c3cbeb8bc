"""The NIfTI layers of the 3-D viewer: known answers on tiny arrays, and a round trip through nibabel."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from core.masks import slice_outline
from core.types import Modality, Volume, Window
from core.viewer_layers import (compact_voxels, heat_above, heatmap_layer, nifti_bytes, outline_layer,
                                scan_layer)


def _load(data: bytes) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(data))


def _square(size: int = 9, side: int = 5) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    start = (size - side) // 2
    mask[start:start + side, start:start + side] = 1
    return mask


def test_the_outline_of_a_square_is_its_border_pixels():
    outline = slice_outline(_square())
    assert outline.dtype == bool and int(outline.sum()) == 16  # a 5x5 square's ring: 25 - 3x3
    assert outline[2, 2:7].all() and outline[6, 2:7].all() and outline[2:7, 2].all() and outline[2:7, 6].all()
    assert not outline[3:6, 3:6].any()


def test_a_volume_is_outlined_slice_by_slice_not_as_a_3d_shell():
    block = np.repeat(_square()[..., None], 4, axis=2)  # the square on 4 axial slices
    outline = slice_outline(block)
    # every slice, the first and the last included, shows the same ring (a 3-D erosion would fill the
    # end slices and leave the middle ones' rings unchanged)
    assert [int(outline[..., s].sum()) for s in range(4)] == [16, 16, 16, 16]


def test_a_region_at_the_edge_is_closed_along_the_edge():
    mask = np.zeros((5, 5), dtype=bool)
    mask[:, :3] = True
    outline = slice_outline(mask)
    assert outline[:, 0].all() and outline[:, 2].all() and not outline[1:4, 1].any()


def test_nifti_bytes_round_trip_with_the_same_affine_data_and_range():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(4, 3, 5)).astype(np.float32)
    affine = np.array([[2.0, 0, 0, -10], [0, 3.0, 0, 5], [0, 0, 1.5, 0], [0, 0, 0, 1]])
    raw = nifti_bytes(data, affine, display_range=(-1.0, 2.0))
    assert raw[:2] == b"\x1f\x8b"  # gzip
    image = _load(raw)
    np.testing.assert_array_equal(image.affine, affine)
    np.testing.assert_array_equal(np.asarray(image.dataobj), data)
    assert image.get_data_dtype() == np.float32
    assert image.header.get_zooms() == (2.0, 3.0, 1.5)  # true voxel aspect
    assert (float(image.header["cal_min"]), float(image.header["cal_max"])) == (-1.0, 2.0)
    assert nifti_bytes(data, affine) == nifti_bytes(data, affine)  # no time stamp: equal input, equal bytes


def test_integer_intensities_are_stored_as_int16_and_others_as_float32():
    assert compact_voxels(np.array([-1024.0, 0.0, 3071.0])).dtype == np.int16
    assert compact_voxels(np.array([0.0, 0.5])).dtype == np.float32
    assert compact_voxels(np.array([0.0, 40000.0])).dtype == np.float32  # beyond int16
    assert compact_voxels(np.array([0.0, np.nan])).dtype == np.float32


def _volume(array: np.ndarray) -> Volume:
    return Volume(array=array.astype(np.float32), spacing=(2.0, 3.0, 2.0),
                  affine=np.diag([2.0, 3.0, 2.0, 1.0]), modality=Modality.CT)


def test_the_scan_layer_opens_in_the_window_clipped_to_the_data():
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4) * 10.0 - 100.0  # -100 .. 130, integers
    image = _load(scan_layer(_volume(array), Window(center=0.0, width=100.0)))
    assert image.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asarray(image.dataobj), array)
    assert (float(image.header["cal_min"]), float(image.header["cal_max"])) == (-50.0, 50.0)
    wide = _load(scan_layer(_volume(array), Window(center=0.0, width=1000.0)))
    assert (float(wide.header["cal_min"]), float(wide.header["cal_max"])) == (-100.0, 130.0)


def test_a_2d_image_is_not_a_viewer_layer():
    flat = Volume(array=np.zeros((4, 4), np.float32), spacing=(1.0, 1.0), affine=np.eye(4))
    with pytest.raises(ValueError, match="3-D"):
        scan_layer(flat, Window(0.0, 1.0))


def test_the_heatmap_layer_holds_what_is_above_tau_scaled_from_tau():
    heat = np.array([[[0.5, 2.0], [3.5, np.nan]]], dtype=np.float32)  # (1, 2, 2)
    np.testing.assert_allclose(heat_above(heat, 1.5), [[[0.0, 0.5], [2.0, 0.0]]])
    image = _load(heatmap_layer(heat, np.eye(4), tau=1.5, high=3.0))
    np.testing.assert_allclose(np.asarray(image.dataobj), [[[0.0, 0.5], [2.0, 0.0]]])
    assert (float(image.header["cal_min"]), float(image.header["cal_max"])) == (0.0, 1.5)  # tau .. high
    hotter = _load(heatmap_layer(heat, np.eye(4), tau=1.5, high=9.0))
    assert float(hotter.header["cal_max"]) == 2.0  # clipped to the hottest voxel
    nothing = _load(heatmap_layer(heat, np.eye(4), tau=5.0, high=6.0))
    assert not np.asarray(nothing.dataobj).any() and float(nothing.header["cal_max"]) == 0.0


def test_the_outline_layer_is_the_mask_border_on_the_scan_grid():
    mask = np.repeat(_square()[..., None], 2, axis=2)
    affine = np.diag([0.5, 0.5, 3.0, 1.0])
    image = _load(outline_layer(mask, affine))
    np.testing.assert_array_equal(image.affine, affine)
    assert image.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(image.dataobj), slice_outline(mask).astype(np.uint8))
    assert int(np.asarray(image.dataobj).sum()) == 32
