"""Data preparation and the synthetic driving world (``python -m data.synthetic``)."""
