"""Strict JSON files: the one writer of the project's JSON outputs.

Python's ``json`` writes NaN and infinity as the tokens ``NaN`` / ``Infinity``, which are not JSON
(other readers refuse them).  Here every non-finite float is written as ``null`` (e.g. the PSNR
of an exact reconstruction is +inf), tensors and numpy values become numbers and lists, and
files are replaced atomically (a reader never sees half a file).  The command line, the data-set
runner and the calibration study write their JSON through here.

    write_json({"psnr": float("inf"), "rmse": 1.5}, "out/metrics.json")   # {"psnr": null, "rmse": 1.5}
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch


def json_safe(data: Any) -> Any:
    """``data`` as plain JSON values: floats that are not finite (NaN, +-inf) become None, tensors
    and numpy arrays become (nested) lists, numpy scalars Python numbers; mappings and sequences
    are converted item by item (keys as strings); any other object becomes its ``str()``."""
    if data is None or isinstance(data, str):
        return data
    if isinstance(data, (bool, np.bool_)):
        return bool(data)
    if isinstance(data, (int, np.integer)):
        return int(data)
    if isinstance(data, (float, np.floating)):
        return float(data) if math.isfinite(data) else None
    if isinstance(data, torch.Tensor):
        return json_safe(data.detach().cpu().tolist())
    if isinstance(data, np.ndarray):
        return json_safe(data.tolist())
    if isinstance(data, Mapping):
        return {str(k): json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v) for v in data]
    return str(data)


def strict_json(data: Any, indent: int | None = 2, sort_keys: bool = True) -> str:
    """``data`` as strict JSON text (``json_safe``; no NaN / Infinity tokens)."""
    return json.dumps(json_safe(data), indent=indent, sort_keys=sort_keys, allow_nan=False)


def write_json(data: Any, path: str | Path, indent: int | None = 2, sort_keys: bool = True) -> Path:
    """Write ``strict_json(data)`` to ``path`` atomically (a temporary file, then a rename),
    creating its folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = strict_json(data, indent=indent, sort_keys=sort_keys)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
