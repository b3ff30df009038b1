"""One-line error messages, also for errors raised inside DataLoader worker processes.

A worker's exception reaches the main process re-created from one string: torch's report
"Caught <Type> in DataLoader worker process N.\\nOriginal Traceback ...", whose last line is
``<module>.<Type>: <the worker's message>``.  :func:`one_line` takes that message back, so an
error met with ``-j 8`` reads as it does with ``-j 0``.
"""

WORKER_REPORT = 'in DataLoader worker process'


def one_line(error):
    """The message of ``error`` (an exception or its text), reduced to the worker's own message when it
    is a DataLoader worker's report."""
    text = str(error)
    lines = text.strip().splitlines()
    if not lines or WORKER_REPORT not in lines[0]:
        return text
    last = lines[-1]
    return last.split(': ', 1)[1] if ': ' in last else last
