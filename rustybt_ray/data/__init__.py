"""Market-data bundles: in-memory arrays, ingest with validation, on-disk format, registry, demo."""

from rustybt_ray.data.bundle import FIELDS, OHLCV, Asset, BarFrequency, Bundle

__all__ = ["FIELDS", "OHLCV", "Asset", "BarFrequency", "Bundle"]
