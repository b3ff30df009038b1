"""Speed and memory measurements that print numbers; run each from the repository root as a module,
e.g. ``python -m benchmarks.bench_train_step``."""
