"""The loss terms of Insta-DM in one table: name, command-line flag, default weight, CSV column, TensorBoard tag.

Everything that lists the terms is made from :data:`LOSS_TERMS`: ``LossOptions``' weights, train.py's
weight flags, the per-iteration CSV header and the TensorBoard scalars, and the weighted total of the step
and of validation (:func:`weighted_total`).  The CSV columns are the official logs' names.
"""
from dataclasses import dataclass

from cli_types import float_in


@dataclass(frozen=True)
class LossTerm:
    """One term of the objective."""

    name: str             # key of StepOutputs.losses and weight field of projection.LossOptions
    flags: tuple          # train.py's flags for its weight (short, long)
    default_weight: float
    csv_column: str       # column of the per-iteration CSV (the official name)
    tensorboard_tag: str  # scalar of TensorBoard
    description: str

    @property
    def dest(self):
        """Attribute of the parsed arguments that holds the weight."""
        return self.flags[-1].lstrip('-').replace('-', '_')


LOSS_TERMS = (
    LossTerm('photo', ('-p', '--photo-loss-weight'), 2.0, 'photo_loss', 'train/photo',
             'photometric loss weight'),
    LossTerm('geometry', ('-c', '--geometry-consistency-weight'), 1.0, 'geometry_loss', 'train/geometry',
             'geometry consistency loss weight'),
    LossTerm('smooth', ('-s', '--smooth-loss-weight'), 0.1, 'smooth_loss', 'train/smooth',
             'edge-aware smoothness loss weight'),
    LossTerm('obj_size', ('-o', '--scale-loss-weight'), 0.02, 'scale_loss', 'train/obj_size',
             'object size loss weight'),
    LossTerm('mof_consistency', ('-mc', '--mof-consistency-loss-weight'), 0.1, 'mof_consistency_loss',
             'train/mof_consistency', 'motion-field consistency loss weight'),
    LossTerm('height_prior', ('-hp', '--height-loss-weight'), 0.0, 'height_loss', 'train/height_prior',
             'height prior weight'),
    LossTerm('mean_disparity', ('-dm', '--depth-loss-weight'), 0.0, 'depth_loss', 'train/mean_disparity',
             'mean disparity weight'),
)
LOSS_NAMES = tuple(term.name for term in LOSS_TERMS)
CSV_LOSS_NAMES = tuple(term.csv_column for term in LOSS_TERMS)
DEFAULT_WEIGHTS = {term.name: term.default_weight for term in LOSS_TERMS}
VALIDATION_TERMS = ('photo', 'geometry', 'smooth')   # the official validation total (validate_without_gt)
LOSS_WEIGHT = float_in(0)


def add_loss_weight_arguments(parser):
    """Add every term's weight flag (``-p``, ``-c``, ...) to an argparse parser."""
    for term in LOSS_TERMS:
        parser.add_argument(*term.flags, type=LOSS_WEIGHT, default=term.default_weight, metavar='W',
                            help=f'{term.description} (default {term.default_weight:g})')


def weights_from_args(args):
    """``{term name: weight}`` from parsed arguments."""
    return {term.name: getattr(args, term.dest) for term in LOSS_TERMS}


def weighted_total(terms, weights, names=LOSS_NAMES):
    """``sum(weights[name] * terms[name])`` over ``names`` (all terms by default): tensors or floats."""
    return sum(weights[name] * terms[name] for name in names)
