"""What a training run logs: the per-epoch and per-iteration CSV files and TensorBoard."""
import csv
import io
import os

from tensorboardX import SummaryWriter

from fileio import atomic_open
from loss_terms import CSV_LOSS_NAMES, LOSS_TERMS
from visualization import tensorboard_images


SUMMARY_HEADER = ['epoch', 'train_loss', 'validation_loss']
FULL_HEADER = ['iteration'] + list(CSV_LOSS_NAMES) + ['train_loss']


class Logs:
    """CSV files and TensorBoard writer of a run (only the main process writes)."""

    def __init__(self, run_dir, args, enabled):
        self.enabled = enabled
        self.run_dir = run_dir
        self.summary_path = os.path.join(run_dir, args.log_summary)
        self.full_path = os.path.join(run_dir, args.log_full)
        self.writer = None
        if not enabled:
            return
        os.makedirs(run_dir, exist_ok=True)
        for path, header in ((self.summary_path, SUMMARY_HEADER), (self.full_path, FULL_HEADER)):
            if not os.path.exists(path):
                self._append(path, header)
        self.writer = SummaryWriter(run_dir)

    @staticmethod
    def _append(path, row):
        with open(path, 'a', newline='') as f:
            csv.writer(f, delimiter='\t').writerow(row)

    def drop_rows_after(self, state):
        """Remove the CSV rows logged after the checkpoint being resumed (a crash may leave some: they
        would otherwise appear twice)."""
        if self.enabled:
            keep_tsv_rows(self.summary_path, SUMMARY_HEADER, lambda epoch: epoch <= state.epoch)
            keep_tsv_rows(self.full_path, FULL_HEADER, lambda iteration: iteration < state.n_iter)

    def iteration(self, n_iter, terms, total):
        if not self.enabled:
            return
        values = [terms[term.name].item() for term in LOSS_TERMS]
        self._append(self.full_path, [n_iter] + values + [total])
        for term, value in zip(LOSS_TERMS, values):
            self.writer.add_scalar(term.tensorboard_tag, value, n_iter)
        self.writer.add_scalar('train/total_loss', total, n_iter)

    def scalar(self, tag, value, step):
        if self.enabled:
            self.writer.add_scalar(tag, value, step)

    def images(self, outputs, n_iter):
        if self.enabled:
            for tag, image in tensorboard_images(outputs).items():
                self.writer.add_image(f'train/{tag}', image, n_iter)

    def epoch(self, epoch, train_loss, errors):
        if not self.enabled:
            return
        decisive = next(iter(errors.values())) if errors else float('nan')
        self._append(self.summary_path, [epoch, train_loss, decisive])
        self.writer.add_scalar('train/epoch_loss', train_loss, epoch)
        for name, value in errors.items():
            self.writer.add_scalar(f'val/{name}', value, epoch)
        self.writer.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()


def keep_tsv_rows(path, header, keep):
    """Rewrite the TSV log ``path`` with its complete rows whose first column (an int) ``keep`` accepts.

    A file with another header (a run logged before the epoch/iteration column) is left alone.
    """
    if not os.path.isfile(path):
        return
    with open(path, newline='') as f:
        rows = list(csv.reader(f, delimiter='\t'))
    if not rows or rows[0] != header:
        return
    kept = [row for row in rows[1:] if len(row) == len(header) and row[0].isdigit() and keep(int(row[0]))]
    text = io.StringIO()
    csv.writer(text, delimiter='\t').writerows([header] + kept)
    with atomic_open(path) as handle:
        handle.write(text.getvalue().encode())
