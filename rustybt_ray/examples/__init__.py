"""Example strategies shipped with rustybt_ray (used by the quick start, tests and benchmarks)."""
