"""``argparse`` types that check a number when the command line is parsed.

A bad value stops the script with argparse's usual two lines (usage, then
"error: argument -b/--batch-size: must be an integer >= 1, got '0'") and exit code 2.
"""
import argparse
import math


def int_at_least(minimum):
    """An ``int`` type accepting values ``>= minimum``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return value
    parse.__name__ = f'int>={minimum}'
    return parse


def odd_int_at_least(minimum):
    """An ``int`` type accepting odd values ``>= minimum`` (e.g. a sequence length: 3, 5, ...)."""
    def parse(text):
        value = int_at_least(minimum)(text)
        if value % 2 == 0:
            raise argparse.ArgumentTypeError(f"must be an odd integer >= {minimum}, got {text!r}")
        return value
    parse.__name__ = f'odd int>={minimum}'
    return parse


def float_in(low, high=math.inf, include_high=True, include_low=True):
    """A finite ``float`` type accepting ``low <= value <= high`` (``<`` where ``include_*`` is False)."""
    lower = '[' if include_low else '('
    upper = ']' if include_high else ')'
    interval = (f"in {lower}{low}, {high}{upper}" if math.isfinite(high)
                else f"{'>=' if include_low else '>'} {low}")

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number {interval}, got {text!r}") from None
        too_high = value > high if include_high else value >= high
        too_low = value < low if include_low else value <= low
        if not math.isfinite(value) or too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be a finite number {interval}, got {text!r}")
        return value
    parse.__name__ = f'float {interval}'
    return parse
