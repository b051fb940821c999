"""Loading a strategy class from where a user keeps it: a file path or an importable module.

``load_strategy("path/to/strategy.py:SmaCross")`` or ``load_strategy("mypkg.strategies:SmaCross")``;
the command line, sweep files and Ray job entry points all load strategies this way.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from rustybt_ray.engine.algorithm import TradingAlgorithm
from rustybt_ray.errors import StrategyError

__all__ = ["load_strategy"]


def load_strategy(target: str) -> type:
    """Load a strategy class from ``path/to/file.py:ClassName`` or ``package.module:ClassName``."""
    module_part, sep, class_name = target.rpartition(":")
    if not sep or not module_part or not class_name:
        raise StrategyError(f"strategy must look like path/to/strategy.py:ClassName or module:ClassName, got {target!r}")
    if module_part.endswith(".py") or "/" in module_part or "\\" in module_part:
        path = Path(module_part)
        if not path.is_file():
            raise StrategyError(f"strategy file {path} does not exist")
        spec = importlib.util.spec_from_file_location(f"_rustybt_user_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise StrategyError(f"cannot import strategy file {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses and pickling look the module up
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_part)
        except ImportError as exc:
            raise StrategyError(f"cannot import strategy module {module_part!r}: {exc}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        names = sorted(n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, TradingAlgorithm))
        raise StrategyError(f"{module_part} has no class {class_name!r}; strategies there: {', '.join(names) or 'none'}")
    if not (isinstance(cls, type) and issubclass(cls, TradingAlgorithm)):
        raise StrategyError(f"{target} is not a TradingAlgorithm subclass")
    return cls
