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
