"""Stop requests (SIGTERM, SIGUSR1, Ctrl-C) that let the training loop finish its step and save.

Cluster schedulers stop a job with SIGTERM (and SIGKILL a while later); SLURM can send SIGUSR1
ahead of time (``--signal=USR1@120``).  :class:`StopRequest` turns these signals into a flag that
the loop reads between steps.  A second Ctrl-C stops at once (``KeyboardInterrupt``).
"""
import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class StopRequest:
    """Records the first stop signal received while installed (use as a context manager)."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self):
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        return False

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum

    @property
    def requested(self):
        return self.signum is not None

    @property
    def name(self):
        return signal.Signals(self.signum).name

    @property
    def exit_code(self):
        """The shell's code for death by this signal (143 for SIGTERM): the job did not finish."""
        return 128 + self.signum


WORKER_IGNORED_SIGNALS = (signal.SIGUSR1, signal.SIGINT)


def ignore_stop_signals(worker_id=None):
    """DataLoader ``worker_init_fn``: workers leave Ctrl-C and SIGUSR1 to the main process.

    SIGTERM keeps its default action: the DataLoader itself stops its workers with it.  A SIGTERM sent
    to every process of a job (as schedulers do) thus ends the workers; the main process then meets
    the dead workers when it fetches the next batch and, having its own stop request, saves instead
    (see :func:`workers_stopped_by`).
    """
    for signum in WORKER_IGNORED_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def workers_stopped_by(error, stop):
    """True when ``error`` is the DataLoader's report of workers killed while a stop request is pending."""
    return stop is not None and stop.requested and 'DataLoader worker' in str(error)
