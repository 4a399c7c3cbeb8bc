import numpy as np

from ui.viewer import fit_for_screen, square_pixels


def test_anisotropic_pixels_are_stretched_to_true_proportions():
    slice_u8 = np.zeros((62, 128), np.uint8)  # ITK T1 axial: 3 mm rows, 2 mm columns
    assert square_pixels(slice_u8, (3.0, 2.0)).shape == (93, 128)
    assert square_pixels(slice_u8, (2.0, 3.0)).shape == (62, 192)
    assert square_pixels(slice_u8, (1.0, 1.0)) is slice_u8


def test_large_slices_are_shrunk_for_the_screen_keeping_the_aspect():
    radiograph = np.zeros((1955, 1841), np.uint8)
    shown = fit_for_screen(radiograph, max_px=1024)
    assert shown.shape == (1024, 964)
    small = np.zeros((200, 100), np.uint8)
    assert fit_for_screen(small) is small


def test_coronal_and_sagittal_views_put_a_known_voxel_where_a_radiologist_expects_it():
    """One voxel at the patient's left-most, anterior-most, superior-most corner of a RAS volume."""
    from core.types import Volume

    array = np.zeros((4, 5, 6), np.float32)
    array[0, 4, 5] = 1.0
    volume = Volume(array, (1.0, 2.0, 3.0), np.eye(4))
    assert [volume.plane_count(p) for p in ("axial", "coronal", "sagittal")] == [6, 5, 4]
    coronal = volume.plane_slice_of(array, "coronal", 4)  # superior at the top, patient's right on the left
    assert coronal.shape == (6, 4) and np.argwhere(coronal).tolist() == [[0, 3]]
    sagittal = volume.plane_slice_of(array, "sagittal", 0)  # superior at the top, anterior on the left
    assert sagittal.shape == (6, 5) and np.argwhere(sagittal).tolist() == [[0, 0]]
    axial = volume.plane_slice_of(array, "axial", 5)  # as display_slice: anterior at the top
    np.testing.assert_array_equal(axial, volume.display_slice(5))
    assert np.argwhere(axial).tolist() == [[0, 3]]
    assert volume.plane_spacing("coronal") == (3.0, 1.0) and volume.plane_spacing("sagittal") == (3.0, 2.0)
    assert volume.plane_slice_of(array, "coronal", 0).sum() == 0  # the voxel is on coronal slice 4 only
    import pytest

    with pytest.raises(IndexError):
        volume.plane_slice_of(array, "sagittal", 4)
    with pytest.raises(ValueError, match="3-D"):
        Volume(np.zeros((3, 3), np.float32), (1.0, 1.0), np.eye(4)).plane_slice_of(np.zeros((3, 3)), "coronal", 0)


def test_the_plane_overlay_outlines_the_mask_cut_through_the_volume_and_marks_the_axial_row():
    from types import SimpleNamespace

    from core.render import MASK_OUTLINE_RGB
    from core.types import Volume
    from ui.review import make_plane_overlay
    from ui.viewer import mark_row

    heat = np.zeros((12, 12, 10), np.float32)
    heat[2:7, 3:9, 4:8] = 5.0  # a hot box: x 2-6, y 3-8, z 4-7
    mask = (heat > 1.0).astype(np.uint8)
    volume = Volume(np.zeros_like(heat), (1.0, 1.0, 1.0), np.eye(4))
    result = SimpleNamespace(heatmap=heat, tau=1.0, mask_at=lambda tau: mask if tau == 1.0 else mask * 0)
    draw = make_plane_overlay(result, volume, 1.0, 0.5, "inferno")
    gray = np.zeros((10, 12), np.uint8)
    rgb = draw("coronal", 5, gray)  # y = 5 cuts the box
    outline = np.all(rgb == MASK_OUTLINE_RGB, axis=-1)
    rows, cols = np.nonzero(outline)
    # z 4..7 -> display rows 9-z = 2..5; x 2..6 -> display columns 11-x = 5..9
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (2, 5, 5, 9)
    assert not draw("coronal", 10, gray).any()  # y = 10 misses the box: grey (black) only
    marked = mark_row(rgb, 0)
    assert (marked[0] == (255, 214, 0)).all() and (rgb[0] != (255, 214, 0)).any()


def test_the_page_follows_niivues_crosshair_and_knows_where_niivue_opens():
    from ui.viewer import crosshair_slice

    assert crosshair_slice({"type": "voxel_click", "voxel": [98, 116, 40], "mm": [0, 0, 0]}, 189) == 40
    # before any report NiiVue sits at its centre voxel, round(n / 2 - 0.5) with halves rounded up
    assert crosshair_slice(None, 189) == 94 and crosshair_slice(None, 128) == 64
    assert crosshair_slice({"type": "voxel_click", "voxel": [0, 0, 189]}, 189) == 94  # outside: ignored
    assert crosshair_slice({"type": "other"}, 10) == 5


def test_format_score_tells_a_head_threshold_from_1_and_keeps_two_decimals_elsewhere():
    from ui.analysis import format_score

    assert format_score(0.999997) == "0.999997"  # a volume's tau: not "1.00"
    assert format_score(0.9927) == "0.9927"
    assert format_score(0.999925) == "0.999925"
    assert format_score(0.5) == "0.50" and format_score(3.456) == "3.46" and format_score(1.0) == "1.00"
