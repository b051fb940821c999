"""Market-data bundles: in-memory arrays, ingest with validation, on-disk format, registry, demo."""

from rustybt_ray.data.bundle import FIELDS, OHLCV, Asset, BarFrequency, Bundle
from rustybt_ray.data.registry import (
    BundleInfo,
    bundle_info,
    bundle_root,
    ingest_bundle,
    list_bundles,
    load_bundle,
    remove_bundle,
)
from rustybt_ray.data.validation import DroppedRow

__all__ = [
    "FIELDS",
    "OHLCV",
    "Asset",
    "BarFrequency",
    "Bundle",
    "BundleInfo",
    "DroppedRow",
    "bundle_info",
    "bundle_root",
    "ingest_bundle",
    "list_bundles",
    "load_bundle",
    "remove_bundle",
]
