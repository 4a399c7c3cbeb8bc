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
