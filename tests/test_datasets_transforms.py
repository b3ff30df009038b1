"""Joint transforms: intrinsics stay consistent with the pixels, masks follow the images, seeds reproduce."""
import numpy as np
import pytest
import torch

from datasets.custom_transforms import (ArrayToTensor, Compose, Normalize, RandomHorizontalFlip, RandomScaleCrop,
                                        train_transform)

H, W = 48, 80
K = np.array([[40.0, 0, 37.3], [0, 42.0, 22.6], [0, 0, 1]])


def coordinate_image():
    """``[H,W,3]`` float32 image whose channels hold the pixel's own (u, v) and a constant."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    return np.stack([u, v, np.full_like(u, 7)], axis=-1)


def source_pixels(new_K, flipped):
    """Where each output pixel's 3-D ray projects in the original camera: ``(u [H,W], v [H,W])``."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.linalg.inv(new_K) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    if flipped:
        rays[0] = -rays[0]
    pixels = K @ rays
    return (pixels[0] / pixels[2]).reshape(H, W), (pixels[1] / pixels[2]).reshape(H, W)


def assert_pixels_match_geometry(image, new_K, flipped):
    """A 3-D point projects onto the same image content before and after the transform."""
    expected_u, expected_v = source_pixels(new_K, flipped)
    inside = (expected_u >= 0) & (expected_u <= W - 1) & (expected_v >= 0) & (expected_v <= H - 1)
    assert inside.mean() > 0.8
    np.testing.assert_allclose(image[..., 0][inside], expected_u[inside], atol=2e-3)
    np.testing.assert_allclose(image[..., 1][inside], expected_v[inside], atol=2e-3)


def test_flip_intrinsics_consistent_with_pixels():
    images, _, new_K = RandomHorizontalFlip(probability=1.0)([coordinate_image()], [], K, np.random.default_rng(0))
    assert_pixels_match_geometry(images[0], new_K, flipped=True)


@pytest.mark.parametrize('seed', range(4))
def test_scale_crop_intrinsics_consistent_with_pixels(seed):
    images, _, new_K = RandomScaleCrop()([coordinate_image()], [], K, np.random.default_rng(seed))
    assert images[0].shape == (H, W, 3)
    assert new_K[0, 0] > K[0, 0] and new_K[0, 0] < 1.15 * K[0, 0]
    assert_pixels_match_geometry(images[0], new_K, flipped=False)


@pytest.mark.parametrize('seed', range(6))
def test_flip_then_scale_crop_consistent_and_masks_follow_images(seed):
    mask = np.zeros((3, H, W), np.float32)
    mask[0] = 2
    mask[1, 10:30, 5:25] = 1
    mask[2, 30:44, 50:75] = 1
    image = coordinate_image()
    image[..., 2] = 255 * mask[1]
    transform = Compose([RandomHorizontalFlip(), RandomScaleCrop()])
    rng = np.random.default_rng(seed)
    images, masks, new_K = transform([image], [mask], K, rng)
    flipped = images[0][0, -1, 0] < images[0][0, 0, 0]
    assert_pixels_match_geometry(images[0], new_K, flipped)
    out = masks[0]
    assert out.shape == (3, H, W) and np.all(out[0] == 2)
    assert set(np.unique(out[1:])) <= {0.0, 1.0}
    bright = images[0][..., 2] > 127.5
    assert np.mean(bright != (out[1] > 0)) < 0.02
    again = transform([image], [mask], K, np.random.default_rng(seed))
    np.testing.assert_array_equal(again[1][0], out)
    np.testing.assert_array_equal(again[2], new_K)


def test_single_channel_masks_survive_augmentation():
    masks = [np.zeros((1, H, W), np.float32)]
    _, out, _ = train_transform()([coordinate_image()], masks, K, np.random.default_rng(0))
    assert out[0].shape == (1, H, W)


def test_to_tensor_and_normalise():
    image = np.zeros((2, 3, 3), np.float32)
    image[0, 0] = [0, 127.5, 255]
    images, masks, _ = Compose([ArrayToTensor(), Normalize()])([image], [np.ones((2, 2, 3), np.float32)], None)
    assert images[0].shape == (3, 2, 3) and images[0].dtype == torch.float32
    torch.testing.assert_close(images[0][:, 0, 0], torch.tensor([-1.0, 0.0, 1.0]))
    assert images[0][:, 1].eq(-1).all()
    assert torch.is_tensor(masks[0]) and masks[0].shape == (2, 2, 3)


def test_figures_undo_the_network_normalisation():
    from network_input import denormalise, normalise
    from visualization import image_to_numpy
    pixels = torch.tensor([0.0, 0.25, 1.0]).reshape(3, 1, 1)
    torch.testing.assert_close(denormalise(normalise(pixels)), pixels)
    np.testing.assert_allclose(image_to_numpy(normalise(pixels))[0, 0], [0.0, 0.25, 1.0])


def test_random_transforms_require_a_generator():
    with pytest.raises(TypeError, match='Generator'):
        RandomScaleCrop()([coordinate_image()], [], K, None)
