"""A bundle field's bars as Python lists of floats, built once per process for small bundles.

The event loop reads one row of prices per bar twice (the fill's reference prices,
the sizing's marks), and at a few assets NumPy's row indexing plus ``tolist()`` is a
noticeable share of a bar's cost. For bundles up to ``MAX_CELLS`` cells per field the
whole field is converted once and shared by every trial the process runs (keyed by
the bundle's content hash, which also makes sharing safe: bundles are immutable).
Larger bundles return None and the engine converts row by row. The lists must never be
mutated.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from rustybt_ray.data.bundle import FIELD_INDEX, Bundle

#: Fields of at most this many cells (bars x assets) are converted: about 8 MB of
#: Python floats each.
MAX_CELLS = 1 << 18
#: Converted fields kept per process (least recently used first out): two bundles.
MAX_ENTRIES = 4

_CACHE: OrderedDict[tuple[str, str, bool], list[list[float]]] = OrderedDict()
_LOCK = threading.Lock()


def row_lists(bundle: Bundle, field: str, nan_as_zero: bool = False) -> list[list[float]] | None:
    """``bundle.<field>`` as one list per bar, or None when the bundle is too large to convert.

    ``nan_as_zero`` gives 0.0 where the field is NaN: for marks, where a flat asset
    with no price must add nothing to the portfolio value, and where "no price" is
    tested as ``not price > 0`` either way.
    """
    block = bundle.values[FIELD_INDEX[field]]
    if block.size > MAX_CELLS:
        return None
    key = (bundle.version, field, nan_as_zero)
    with _LOCK:
        rows = _CACHE.get(key)
        if rows is not None:
            _CACHE.move_to_end(key)
            return rows
    rows = (np.where(np.isnan(block), 0.0, block) if nan_as_zero else block).tolist()
    with _LOCK:
        _CACHE[key] = rows
        while len(_CACHE) > MAX_ENTRIES:
            _CACHE.popitem(last=False)
    return rows
