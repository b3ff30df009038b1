"""Numbers as the experiments' tables print them."""


def number(value, digits=3):
    """``value`` with ``digits`` decimals; ``n/a`` for None."""
    return 'n/a' if value is None else f'{value:.{digits}f}'


def mean_and_spread(mean, std, digits=3):
    """A table cell: ``mean ± std`` (``mean`` alone when ``std`` is None; ``n/a`` without a mean)."""
    if mean is None or std is None:
        return number(mean, digits)
    return f'{mean:.{digits}f} ± {std:.{digits}f}'
