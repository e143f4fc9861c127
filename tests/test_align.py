"""Five-point alignment: Umeyama's similarity, checked against scikit-image and on rendered images."""

import warnings

import numpy as np
import pytest
from skimage.transform import SimilarityTransform

from ml_target.vision.align import ARCFACE_TEMPLATE, align_face, similarity_transform


def similarity(angle_deg, scale, shift):
    a = np.deg2rad(angle_deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * scale, np.asarray(shift, float)


def apply(matrix, points):
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_recovers_a_known_similarity_exactly():
    rotation, shift = similarity(25.0, 2.3, [310.5, 122.25])
    landmarks = ARCFACE_TEMPLATE @ rotation.T + shift
    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(apply(matrix, landmarks), ARCFACE_TEMPLATE, atol=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_equals_scikit_image_least_squares(seed):
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 800, (5, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # `estimate` is deprecated in 0.26, still exact
        reference = SimilarityTransform()
        assert reference.estimate(src, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(similarity_transform(src, ARCFACE_TEMPLATE), reference.params[:2], atol=1e-9)


def test_never_reflects():
    mirrored = ARCFACE_TEMPLATE * [-1, 1] + [200, 0]  # left and right swapped by a mirror
    matrix = similarity_transform(mirrored, ARCFACE_TEMPLATE)
    assert np.linalg.det(matrix[:, :2]) > 0


def test_identical_points_give_a_finite_transform():
    matrix = similarity_transform(np.full((5, 2), 7.0), ARCFACE_TEMPLATE)
    np.testing.assert_allclose(apply(matrix, np.array([[0.0, 0.0], [100.0, 50.0]])), [ARCFACE_TEMPLATE.mean(0)] * 2)


def render_dots(shape, centres, sigma):
    """An RGB image with a bright Gaussian dot at each (sub-pixel) centre."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    image = np.zeros(shape, np.float64)
    for cx, cy in centres:
        image += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
    return np.repeat(np.clip(image * 255, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def dot_centre(image, near, radius=5):
    x0, y0 = int(round(near[0])), int(round(near[1]))
    window = image[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1, 0].astype(np.float64)
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return np.array([x0 + (window * xx).sum() / window.sum(), y0 + (window * yy).sum() / window.sum()])


def test_a_rotated_and_scaled_face_lands_on_the_template():
    """Dots rendered at a rotated (-35 deg) and scaled (x2.6) face's landmarks end on the template."""
    rotation, shift = similarity(-35.0, 2.6, [260.3, 310.7])
    landmarks = ARCFACE_TEMPLATE @ rotation.T + shift
    image = render_dots((600, 640), landmarks, sigma=1.5 * 2.6)
    crop = align_face(image, landmarks)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    found = np.array([dot_centre(crop, p) for p in ARCFACE_TEMPLATE])
    assert np.abs(found - ARCFACE_TEMPLATE).max() < 0.5


def test_outside_the_image_is_black():
    image = np.full((200, 200, 3), 255, np.uint8)
    landmarks = ARCFACE_TEMPLATE * 0.5 - 10  # a small face cut by the top-left corner: the crop overhangs
    crop = align_face(image, landmarks)
    assert crop[0, 0].tolist() == [0, 0, 0] and crop[-1, -1].tolist() == [255, 255, 255]
