import numpy as np

from core.render import CT_PRESETS, apply_window, auto_window, window_presets
from core.types import Modality, Volume, Window


def test_apply_window_maps_low_mid_high_to_known_gray_levels():
    window = Window(center=40, width=80)  # brain window: 0 HU -> black, 80 HU -> white
    image = np.array([[-1000.0, 0.0, 40.0, 80.0, 3000.0]])
    assert apply_window(image, window).tolist() == [[0, 0, 128, 255, 255]]


def test_auto_window_ignores_the_background():
    image = np.zeros((20, 20), np.float32)
    image[5:15, 5:15] = np.linspace(100, 200, 100).reshape(10, 10)
    window = auto_window(image, percentiles=(0, 100))
    assert (window.low, window.high) == (100.0, 200.0)


def test_ct_volumes_get_ct_presets_and_the_file_window_first():
    array = np.linspace(-1000, 1000, 64, dtype=np.float32).reshape(8, 8)
    volume = Volume(array, (1.0, 1.0), np.eye(4), Modality.CT, window=Window(50, 350))
    presets = window_presets(volume)
    assert list(presets)[0] == "From file"
    assert presets["From file"] == Window(50, 350)
    assert set(CT_PRESETS) <= set(presets)
    mr = Volume(array, (1.0, 1.0), np.eye(4), Modality.MR)
    assert "Brain" not in window_presets(mr)


def test_overlay_keeps_grey_below_low_and_shows_the_colour_map_above():
    from matplotlib import colormaps

    from core.render import overlay_heatmap

    gray = np.full((4, 4), 100, np.uint8)
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0], heat[0, 1] = 5.0, 10.0  # above low = 2; 10 is the top of the map
    out = overlay_heatmap(gray, heat, low=2.0, high=10.0, opacity=1.0, cmap="viridis")
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    assert out[3, 3].tolist() == [100, 100, 100]  # below low: untouched grey
    top = np.round(np.array(colormaps["viridis"](1.0)[:3]) * 255).astype(int).tolist()
    assert out[0, 1].tolist() == top
    half = overlay_heatmap(gray, heat, low=2.0, high=10.0, opacity=0.5, cmap="viridis")
    assert np.abs(half[0, 1].astype(int) - (np.array(top) + 100) / 2).max() <= 1  # a 50 % blend
    assert np.array_equal(overlay_heatmap(gray, heat, low=2.0, high=10.0, opacity=0.0)[..., 0], gray)


def test_overlay_outlines_the_mask_only_on_its_border():
    from core.render import MASK_OUTLINE_RGB, overlay_heatmap

    gray = np.zeros((7, 7), np.uint8)
    mask = np.zeros((7, 7), bool)
    mask[1:6, 1:6] = True
    out = overlay_heatmap(gray, np.zeros((7, 7)), low=1.0, high=2.0, mask=mask)
    outlined = np.all(out == MASK_OUTLINE_RGB, axis=2)
    assert outlined.sum() == 16  # the 5x5 square's border
    assert not outlined[3, 3] and outlined[1, 1] and not outlined[0, 0]
