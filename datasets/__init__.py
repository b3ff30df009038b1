"""KITTI-VIS / Cityscapes-VIS data: training sequences with associated instances, validation with depth."""
from datasets.io import DatasetError
from datasets.sequence_folders import SequenceFolder
from datasets.validation_folders import ValidationSet

__all__ = ['DatasetError', 'SequenceFolder', 'ValidationSet']
