"""experiments/probe_size_target.py: the object-size target's height by distance, and the term's pull."""
import json

import numpy as np
import pytest

from experiments import probe_size_target as probe


def test_pixel_heights_rows_covered_and_span():
    mask = np.zeros((10, 8), bool)
    mask[3:8, 2:5] = True
    mask[5, 6] = True
    assert probe.pixel_heights(mask) == (5, 4)
    single_row = np.zeros((10, 8), bool)
    single_row[4, 1:3] = True
    assert probe.pixel_heights(single_row) == (1, 0)


def test_fitting_height_of_a_known_car():
    depth = np.full((20, 30), 50.0, np.float32)
    depth[5:15, 10:20] = 12.0                       # a car 10 rows tall at 12 m
    masks = np.zeros((2, 20, 30), np.uint8)
    masks[1, 5:15, 10:20] = 1
    ((d, rows_height, span_height),) = probe.fitting_heights(depth, masks, fy=100.0)
    assert d == pytest.approx(12.0)
    assert rows_height == pytest.approx(12.0 * 10 / 100.0)
    assert span_height == pytest.approx(12.0 * 9 / 100.0)
    masks[1] = 0
    masks[1, 5, 10:12] = 1                          # below MIN_CAR_PIXELS: not a car of the probe
    assert probe.fitting_heights(depth, masks, fy=100.0) == []


def test_cars_of_the_synthetic_world_fit_one_height_with_rows_and_a_lower_one_with_span(world):
    _, scene = world
    fy = float(scene.K[1, 1])
    heights = [h for depth, masks in zip(scene.depths, scene.masks) for h in probe.fitting_heights(depth, masks, fy)]
    assert len(heights) >= 3
    for d, rows_height, span_height in heights:
        assert 0.8 < rows_height < 2.2, (d, rows_height)
        assert span_height < rows_height


def test_pull_ratio_is_the_predicted_depth_over_the_asked_one():
    gt = np.full((20, 30), 50.0, np.float32)
    gt[5:15, 10:20] = 12.0
    masks = np.zeros((2, 20, 30), np.uint8)
    masks[1, 5:15, 10:20] = 1
    fy = 100.0
    height_prior = 12.0 * 10 / fy / 40.0            # the term asks 12 m / 40 = 0.3 network units
    pred = gt / 40.0
    ((d, ratio),) = probe.pull_ratios(pred, gt, masks, fy, height_prior)
    assert d == pytest.approx(12.0)
    assert ratio == pytest.approx(1.0)
    ((_, ratio),) = probe.pull_ratios(pred * 1.5, gt, masks, fy, height_prior)
    assert ratio == pytest.approx(1.5)              # drawn 1.5x too far: the term pulls it nearer


def test_band_medians_group_by_distance():
    rows = probe.band_medians([(5.0, 1.0), (6.0, 3.0), (15.0, 2.0), (90.0, 7.0)])
    assert [r['count'] for r in rows] == [2, 1, 0, 0]
    assert rows[0]['median'] == 2.0 and rows[1]['median'] == 2.0 and rows[2]['median'] is None
    assert rows[0]['band'] == '0-10 m'


def test_target_table_renders_the_world_of_the_config(tmp_path, monkeypatch, world):
    _, scene = world
    (tmp_path / 'synthetic_config.json').write_text(json.dumps(
        {'seed': 0, 'scenes': 1, 'frames': 3, 'height': 64, 'width': 96, 'max_cars': 4, 'val_moving_cars': 0}))
    seen = []
    monkeypatch.setattr(probe.synthetic, 'render_world', lambda config, with_flows: seen.append(config) or [scene])
    table = probe.target_table(tmp_path)
    assert seen[0]['width'] == 96
    assert sum(row['cars'] for row in table) >= 3
    assert all(row['height_span'] < row['height_rows'] for row in table if row['cars'])


def test_a_folder_without_a_world_config_is_one_line(tmp_path, capsys):
    assert probe.main(['--data', str(tmp_path), '--output-dir', str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'synthetic_config.json'}: not found (--data must be a folder written by " \
                  "python -m data.synthetic)"
