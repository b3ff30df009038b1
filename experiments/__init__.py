"""Experiments on the synthetic world: evaluation by region, motion accuracy, ablations."""
