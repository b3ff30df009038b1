"""Depth metrics: hand computations, Garg crop, depth caps, median scaling, NumPy/torch agreement."""
import numpy as np
import pytest
import torch

from kitti_eval.depth_metrics import DepthErrors, NoValidPixelsError, average_errors, compute_errors, \
    compute_errors_batch, compute_errors_split, crop_mask, format_table

SHAPE = (375, 1242)  # a KITTI frame: Garg crop rows 153..370, columns 44..1196
ROWS, COLS = slice(153, 371), slice(44, 1197)


def sparse_gt(seed=0, density=0.1, low=1.0, high=79.0):
    """KITTI-sized GT with random depths on a random 10% of the pixels."""
    rng = np.random.default_rng(seed)
    gt = rng.uniform(low, high, SHAPE).astype(np.float32)
    gt[rng.random(SHAPE) > density] = 0
    return gt


def evaluated(gt):
    """Boolean mask of the pixels the metrics use (depth range and Garg crop)."""
    crop = np.zeros(gt.shape, bool)
    crop[ROWS, COLS] = True
    return (gt > 1e-3) & (gt < 80) & crop


def official_style_errors(gt, pred, min_depth=1e-3, max_depth=80):
    """The evaluation written out in NumPy (crop, mask, median scale, clamp, metrics)."""
    mask = (gt > min_depth) & (gt < max_depth)
    crop = np.zeros(gt.shape, bool)
    crop[ROWS, COLS] = True
    mask &= crop
    pred = pred.astype(np.float64) * np.median(gt[mask]) / np.median(pred[mask])
    pred = np.clip(pred, min_depth, max_depth)[mask]
    gt = gt[mask].astype(np.float64)
    thresh = np.maximum(gt / pred, pred / gt)
    return [np.mean(np.abs(gt - pred)), np.mean(np.abs(gt - pred) / gt), np.mean((gt - pred) ** 2 / gt),
            np.sqrt(np.mean((gt - pred) ** 2)), np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2)),
            np.mean(thresh < 1.25), np.mean(thresh < 1.25 ** 2), np.mean(thresh < 1.25 ** 3)]


def test_perfect_prediction_up_to_scale():
    gt = sparse_gt()
    pred = np.where(gt > 0, gt, 7.0) * 3.7  # right up to a global scale; arbitrary where no GT
    errors = compute_errors(gt, pred)
    assert errors.abs_rel == pytest.approx(0, abs=1e-7) and errors.rmse == pytest.approx(0, abs=1e-5)
    assert errors.a1 == 1.0 and errors.a2 == 1.0 and errors.a3 == 1.0
    unscaled = compute_errors(gt, pred / 2, median_scaling=False)  # 1.85 x the GT, or clamped to 80
    gt_evaluated = gt[evaluated(gt)].astype(np.float64)
    assert unscaled.abs_rel == pytest.approx(np.mean(np.minimum(1.85 * gt_evaluated, 80) / gt_evaluated - 1))


def test_known_factor_without_median_scaling():
    gt = np.zeros(SHAPE, np.float32)
    gt[200:300, 100:200] = 10.0
    gt[200:300, 200:300] = 20.0
    errors = compute_errors(gt, gt * 1.1, median_scaling=False)
    assert errors.abs_rel == pytest.approx(0.1)
    assert errors.abs_diff == pytest.approx(0.1 * 15)
    assert errors.sq_rel == pytest.approx(0.01 * 15)  # mean(0.01 gt^2 / gt)
    assert errors.rmse == pytest.approx(0.1 * np.sqrt((100 + 400) / 2))
    assert errors.rmse_log == pytest.approx(np.log(1.1))
    assert (errors.a1, errors.a2, errors.a3) == (1.0, 1.0, 1.0)


def test_known_outliers_with_median_scaling():
    gt = np.zeros(SHAPE, np.float32)
    gt[200:300, 100:200] = 10.0
    pred = np.full(SHAPE, 5.0, np.float32)  # half of the true depth: median scaling fixes it ...
    pred[200:300, 100:125] = 10.0  # ... except on a quarter of the pixels, twice too far after scaling
    errors = compute_errors(gt, pred)
    assert errors.abs_rel == pytest.approx(0.25)  # 1/4 of pixels with |20 - 10| / 10
    assert errors.rmse == pytest.approx(np.sqrt(0.25 * 100))
    assert errors.rmse_log == pytest.approx(np.sqrt(0.25) * np.log(2))
    assert errors.a1 == errors.a2 == errors.a3 == pytest.approx(0.75)  # ratio 2 > 1.25^3 = 1.95


def test_garg_crop_bounds():
    mask = crop_mask(SHAPE).numpy()
    expected = np.zeros(SHAPE, bool)
    expected[ROWS, COLS] = True
    np.testing.assert_array_equal(mask, expected)
    assert crop_mask(SHAPE, crop=None).all()


def test_pixels_outside_the_crop_are_ignored():
    gt = sparse_gt()
    pred = gt.copy()
    pred[gt == 0] = 1.0
    outside = np.ones(SHAPE, bool)
    outside[ROWS, COLS] = False
    pred[outside & (gt > 0)] *= 5  # large errors, all outside the crop
    assert compute_errors(gt, pred).abs_rel == pytest.approx(0, abs=1e-7)
    assert compute_errors(gt, pred, crop=None).abs_rel > 0.1
    only_outside = np.where(outside, gt, 0)
    with pytest.raises(NoValidPixelsError, match="no ground-truth pixel"):
        compute_errors(only_outside, pred)


def test_depth_caps():
    gt = np.zeros(SHAPE, np.float32)
    gt[200:210, 100:200] = 50.0
    gt[210:220, 100:200] = 80.0  # not < max_depth: ignored
    gt[220:230, 100:200] = 1e-3  # not > min_depth: ignored
    pred = np.full(SHAPE, 200.0, np.float32)
    errors = compute_errors(gt, pred, median_scaling=False)
    assert errors.abs_rel == pytest.approx(30 / 50)  # prediction clamped to 80
    errors = compute_errors(gt, np.full(SHAPE, 1e-6, np.float32), median_scaling=False)
    assert errors.abs_diff == pytest.approx(50 - 1e-3)  # clamped up to min_depth
    errors = compute_errors(gt, pred, median_scaling=False, max_depth=100.0)
    assert errors.abs_rel == pytest.approx(((100 - 50) / 50 + (100 - 80) / 80) / 2)


def test_agrees_with_numpy_formulation_and_torch_input():
    gt = sparse_gt(1)
    pred = np.random.default_rng(2).uniform(0.5, 40, SHAPE).astype(np.float32)
    expected = official_style_errors(gt, pred)
    np.testing.assert_allclose(compute_errors(gt, pred), expected, rtol=1e-9)
    np.testing.assert_allclose(compute_errors(torch.from_numpy(gt)[None, None], torch.from_numpy(pred)[None]),
                               expected, rtol=1e-9)


def test_median_of_even_count_is_the_mean_of_the_middle_values():
    gt = np.zeros(SHAPE, np.float32)
    gt[200, 100:104] = [1.0, 2.0, 3.0, 4.0]  # median 2.5
    pred = np.ones(SHAPE, np.float32)
    errors = compute_errors(gt, pred)  # pred scaled to 2.5 everywhere
    assert errors.abs_diff == pytest.approx((1.5 + 0.5 + 0.5 + 1.5) / 4)


def test_foreground_background_split_reuses_the_scale_of_all_pixels():
    gt = np.zeros(SHAPE, np.float32)
    gt[200:300, 100:200] = 10.0
    pred = np.full(SHAPE, 1.0, np.float32)
    pred[200:300, 100:120] = 3.0  # the foreground: 3x too far after the global scale of 10
    fg = np.zeros(SHAPE, bool)
    fg[200:300, 100:120] = True
    split = compute_errors_split(gt, pred, fg)
    assert split['bg'].abs_rel == pytest.approx(0, abs=1e-12)
    assert split['fg'].abs_rel == pytest.approx(2.0)
    assert split['all'].abs_rel == pytest.approx(2.0 * 0.2)
    assert compute_errors_split(gt, pred, np.zeros(SHAPE, bool))['fg'] is None
    assert compute_errors_split(np.zeros(SHAPE), pred, fg) == {'all': None, 'fg': None, 'bg': None}


def test_batch_and_average():
    gt = torch.from_numpy(np.stack([sparse_gt(3, high=70), sparse_gt(4, high=70)]))[:, None]
    pred = gt.clone()
    pred[1] *= 1.1
    per_image = compute_errors_batch(gt, pred, median_scaling=False)
    assert per_image[0].abs_rel == pytest.approx(0) and per_image[1].abs_rel == pytest.approx(0.1)
    mean = average_errors(per_image + [None])
    assert isinstance(mean, DepthErrors) and mean.abs_rel == pytest.approx(0.05)
    assert format_table(mean).splitlines()[0].split() == ['abs_rel,', 'sq_rel,', 'rmse,', 'rmse_log,', 'a1,',
                                                          'a2,', 'a3']


def test_size_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"same size, got \[4, 5\] and \[4, 6\]"):
        compute_errors(np.ones((4, 5)), np.ones((4, 6)))
