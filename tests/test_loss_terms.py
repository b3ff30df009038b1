"""The loss-term table: train.py's flags, LossOptions, the CSV header and the totals all come from it."""
import pytest
import torch

import train
import train_logs
from loss_terms import CSV_LOSS_NAMES, LOSS_NAMES, LOSS_TERMS, VALIDATION_TERMS, weighted_total
from projection import LossOptions

OFFICIAL_FLAGS = {'photo': '-p', 'geometry': '-c', 'smooth': '-s', 'obj_size': '-o', 'mof_consistency': '-mc',
                  'height_prior': '-hp', 'mean_disparity': '-dm'}
OFFICIAL_CSV = ('photo_loss', 'geometry_loss', 'smooth_loss', 'scale_loss', 'mof_consistency_loss', 'height_loss',
                'depth_loss')


def test_table_keeps_the_official_flags_and_csv_columns():
    assert {term.name: term.flags[0] for term in LOSS_TERMS} == OFFICIAL_FLAGS
    assert CSV_LOSS_NAMES == OFFICIAL_CSV
    assert train_logs.FULL_HEADER == ['iteration'] + list(OFFICIAL_CSV) + ['train_loss']
    assert len({term.tensorboard_tag for term in LOSS_TERMS}) == len(LOSS_TERMS)


def test_parser_defaults_and_flags_give_the_loss_options():
    defaults = LossOptions.from_args(train.build_parser().parse_args(['DATA', '--name', 'x']))
    assert defaults.weights == LossOptions().weights == {term.name: term.default_weight for term in LOSS_TERMS}
    argv = ['DATA', '--name', 'x']
    for value, term in enumerate(LOSS_TERMS, start=1):
        argv += [term.flags[value % 2 - 1], str(value)]   # short and long flags alternately
    options = LossOptions.from_args(train.build_parser().parse_args(argv))
    assert options.weights == {term.name: float(value) for value, term in enumerate(LOSS_TERMS, start=1)}


def test_weighted_total_over_all_terms_or_the_validation_terms():
    terms = {name: torch.tensor(float(i + 1)) for i, name in enumerate(LOSS_NAMES)}
    weights = {name: 10.0 ** i for i, name in enumerate(LOSS_NAMES)}
    assert weighted_total(terms, weights).item() == pytest.approx(sum((i + 1) * 10.0 ** i for i in range(7)))
    assert weighted_total(terms, weights, VALIDATION_TERMS).item() == pytest.approx(1 + 20 + 300)
