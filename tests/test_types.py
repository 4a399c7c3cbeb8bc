import numpy as np
import pytest

from core.types import Modality, Volume, from_display, to_display


def test_display_orientation_is_radiological():
    # Axial RAS slice (X, Y): x grows to the patient's right, y to anterior.
    axial = np.zeros((4, 3))
    axial[3, 2] = 1.0  # right-most, most anterior voxel
    display = to_display(axial)
    assert display.shape == (3, 4)
    # Anterior is the top row; the patient's right is the screen's left column.
    assert display[0, 0] == 1.0


def test_from_display_inverts_to_display_exactly():
    axial = np.arange(12.0).reshape(4, 3)
    assert np.array_equal(from_display(to_display(axial)), axial)


def test_stack_display_slices_restores_the_volume_layout():
    array = np.random.default_rng(0).random((5, 6, 3)).astype(np.float32)
    volume = Volume(array, (1.0, 1.0, 2.0), np.eye(4), Modality.MR)
    slices = [volume.display_slice(k) for k in range(volume.n_slices)]
    assert np.array_equal(volume.stack_display_slices(slices), array)
    assert volume.display_spacing() == (1.0, 1.0)


def test_volume_rejects_shapes_it_cannot_hold():
    with pytest.raises(ValueError, match="2-D or 3-D"):
        Volume(np.zeros((2, 2, 2, 2)), (1, 1, 1, 1), np.eye(4))
    with pytest.raises(ValueError, match="spacing"):
        Volume(np.zeros((2, 2)), (1.0, 1.0, 1.0), np.eye(4))
    two_d = Volume(np.zeros((2, 2)), (1.0, 1.0), np.eye(4))
    with pytest.raises(IndexError):
        two_d.display_slice(1)


def test_a_pixel_size_is_given_only_to_a_2d_image_that_states_none():
    picture = Volume(np.zeros((4, 6), np.float32), (1.0, 1.0), np.eye(4), source="/x/g.png", spacing_known=False)
    read = picture.with_pixel_size(0.5)
    assert read.spacing == (0.5, 0.5) and read.spacing_known and picture.spacing == (1.0, 1.0)
    assert read.warnings == ["g.png states no pixel size: read at 0.5 mm per pixel, as asked"] and not picture.warnings
    with pytest.raises(ValueError, match=r"states its pixel size \(0.5 x 0.5 mm\)"):
        read.with_pixel_size(0.5)  # stated (here: given once already) is kept
    with pytest.raises(ValueError, match="not one an image has"):
        picture.with_pixel_size(0.0)
    with pytest.raises(ValueError, match="not one an image has"):
        picture.with_pixel_size(float("nan"))
    volume = Volume(np.zeros((4, 6, 3), np.float32), (1.0, 1.0, 1.0), np.eye(4), spacing_known=False)
    with pytest.raises(ValueError, match="applies to 2-D images"):
        volume.with_pixel_size(0.5)


def test_check_pixel_size_keeps_the_range_ends_and_refuses_what_lies_outside():
    from core.types import PIXEL_MM_RANGE, check_pixel_size

    assert PIXEL_MM_RANGE == (0.05, 20.0)
    assert check_pixel_size(0.05) == 0.05 and check_pixel_size(20) == 20.0 and isinstance(check_pixel_size(1), float)
    for bad in (0.049, 20.5, float("inf"), float("nan"), -1.0):
        with pytest.raises(ValueError, match=r"is not one an image has \(0.05 to 20 mm\)"):
            check_pixel_size(bad)

