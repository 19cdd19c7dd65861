"""The schema of a checkpoint's metadata: input from the file, checked at load like any tensor.

``validate_metadata`` runs when a project-format file is loaded (``native_format``), before the
network is built. Keys that brgm-pyro reads have a fixed type and range:

- ``recommended_config``: a dict with only ``BRGMConfig``'s keys: ``sigma_pixel`` and
  ``sigma_perceptual`` (a finite number in [1e-6, 1e3], or None), ``kappa`` (a finite number in
  [0, 1e4]), ``prior_std`` (``"scalar"`` or ``"per-dimension"``), ``misfit_scale`` (a finite number in
  [1e-6, 1e3], ``"learn"`` or None), ``layer_correlation`` (a number in [0, 0.999]);
- ``recommended_configs``: ``{setting name (a string of at most 200 characters, as
  ``brgm_pyro.corruptions.setting_name`` names a corruption): a dict as ``recommended_config``}``,
  per-setting weights that take precedence over ``recommended_config`` for that setting;
- ``feature_network``: a string of at most 200 characters;
- ``image_preparation``: ``{"method": "pad" | "center-crop" | "resize", "from_size": [H, W]
  (ints in [1, 4096]), "fill": a number in [-1, 1]}`` (``method`` required, the others optional
  or None);
- ``interval_scales``: ``{setting name (a string of at most 200 characters): a finite number in
  (0, 100]}``;
- ``interval_factors``: ``{setting name (as ``interval_scales``): {level (a string holding a number
  in (0, 1)): a finite number in (0, 100]}}``;
- ``training`` / ``training_config`` / ``quality``: dicts of plain data; ``iterations`` /
  ``images_seen``: ints >= 0; ``wall_seconds``: a finite number >= 0; ``data``: a string;
  ``source_format``, ``class_name``: strings of at most 200 characters; ``num_fp16_res``: an int in
  [0, 64] or None.

Unknown top-level keys are **kept as plain data but never used** by brgm-pyro (so a training
note survives a round trip); they, like every value above, must be plain data: None, bools,
ints, finite or not floats, strings, lists / tuples and dicts with string keys, at most
``MAX_DEPTH`` levels deep and ``MAX_ITEMS`` values in all. A tensor, a record or any other object
anywhere in the metadata is refused. Every violation is a ``CheckpointError`` naming the file and
the key.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from .checkpoints import CheckpointError, describe

MAX_DEPTH = 16
MAX_ITEMS = 100_000
MAX_TEXT = 200
RECOMMENDED_KEYS = ("sigma_pixel", "sigma_perceptual", "kappa", "prior_std", "misfit_scale", "layer_correlation")
SIGMA_RANGE = (1e-6, 1e3)
KAPPA_RANGE = (0.0, 1e4)
MAX_LAYER_CORRELATION = 0.999
PREPARATION_METHODS = ("pad", "center-crop", "resize")
MAX_FROM_SIZE = 4096
MAX_INTERVAL_SCALE = 100.0


class _Fail(Exception):
    """Internal: a violation at a key path (turned into a ``CheckpointError`` naming the file)."""


def _brief(value: Any) -> str:
    if type(value) is int and value.bit_length() > 64:
        return "a huge int"
    if value is None or type(value) in (bool, int, float):
        return repr(value)
    if type(value) is str:
        return repr(value) if len(value) <= 40 else repr(value[:40]) + "..."
    return f"a {type(value).__name__}"


def _number(value: Any, where: str, low: float, high: float, low_open: bool = False) -> float:
    """A finite int or float (not a bool) in [low, high] ((low, high] when ``low_open``)."""
    if type(value) not in (int, float) or (type(value) is int and value.bit_length() > 64):
        raise _Fail(f"{where} must be a number, got {_brief(value)}")
    number = float(value)
    inside = (low < number if low_open else low <= number) and number <= high
    if not math.isfinite(number) or not inside:
        bracket = "(" if low_open else "["
        raise _Fail(f"{where}={_brief(value)} is not a finite number in {bracket}{low:g}, {high:g}]")
    return number


def _text(value: Any, where: str) -> str:
    if type(value) is not str or len(value) > MAX_TEXT:
        raise _Fail(f"{where} must be a string of at most {MAX_TEXT} characters, got {_brief(value)}")
    return value


def _int(value: Any, where: str, low: int = 0, high: int = 2**62) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _Fail(f"{where} must be an int in [{low}, {high}], got {_brief(value)}")
    return value


def _dict(value: Any, where: str) -> dict:
    if type(value) is not dict:
        raise _Fail(f"{where} must be a dict, got {_brief(value)}")
    return value


def _recommended_config(value: Any, where: str) -> dict:
    config = _dict(value, where)
    unknown = sorted(k[:40] for k in config if k not in RECOMMENDED_KEYS)  # keys: strings (_check_plain)
    if unknown:
        raise _Fail(f"{where} has unknown keys {unknown[:5]}; known: {list(RECOMMENDED_KEYS)}")
    out: dict[str, Any] = {}
    for key in ("sigma_pixel", "sigma_perceptual"):
        if key in config:
            out[key] = None if config[key] is None else _number(config[key], f"{where}.{key}", *SIGMA_RANGE)
    if "kappa" in config:
        out["kappa"] = _number(config["kappa"], f"{where}.kappa", *KAPPA_RANGE)
    if "misfit_scale" in config:
        tau = config["misfit_scale"]
        out["misfit_scale"] = tau if tau is None or (type(tau) is str and tau == "learn") else \
            _number(tau, f"{where}.misfit_scale", *SIGMA_RANGE)
    if "prior_std" in config:
        if type(config["prior_std"]) is not str or config["prior_std"] not in ("scalar", "per-dimension"):
            raise _Fail(f"{where}.prior_std must be 'scalar' or 'per-dimension', got {_brief(config['prior_std'])}")
        out["prior_std"] = config["prior_std"]
    if "layer_correlation" in config:
        out["layer_correlation"] = _number(config["layer_correlation"], f"{where}.layer_correlation",
                                           0.0, MAX_LAYER_CORRELATION)
    return out


def _recommended_configs(value: Any, where: str) -> dict:
    table = _dict(value, where)
    return {_text(k, f"{where} key"): _recommended_config(v, f"{where}[{_brief(k)}]") for k, v in table.items()}


def _image_preparation(value: Any, where: str) -> dict:
    prep = _dict(value, where)
    unknown = sorted(k[:40] for k in prep if k not in ("method", "from_size", "fill"))
    if unknown:
        raise _Fail(f"{where} has unknown keys {unknown[:5]}; known: ['method', 'from_size', 'fill']")
    method = prep.get("method")
    if type(method) is not str or method not in PREPARATION_METHODS:
        raise _Fail(f"{where}.method must be one of {list(PREPARATION_METHODS)}, got {_brief(method)}")
    out: dict[str, Any] = dict(prep)  # None for from_size / fill: not given
    if prep.get("from_size") is not None:
        size = prep["from_size"]
        if type(size) not in (list, tuple) or len(size) != 2:
            raise _Fail(f"{where}.from_size must be [height, width], got {_brief(size)}")
        out["from_size"] = [_int(v, f"{where}.from_size", 1, MAX_FROM_SIZE) for v in size]
    if prep.get("fill") is not None:
        out["fill"] = _number(prep["fill"], f"{where}.fill", -1.0, 1.0)
    return out


def _interval_scales(value: Any, where: str) -> dict:
    scales = _dict(value, where)
    return {_text(k, f"{where} key"): _number(v, f"{where}[{_brief(k)}]", 0.0, MAX_INTERVAL_SCALE, low_open=True)
            for k, v in scales.items()}


def _interval_factors(value: Any, where: str) -> dict:
    table = _dict(value, where)
    out = {}
    for name, entry in table.items():
        here = f"{where}[{_brief(name)}]"
        levels = _dict(entry, here)
        checked = {}
        for level, factor in levels.items():
            text = _text(level, f"{here} key")
            try:
                a = float(text)
            except ValueError:
                a = math.nan
            if not 0 < a < 1:
                raise _Fail(f"{here} key must be a level in (0, 1), got {_brief(level)}")
            checked[text] = _number(factor, f"{here}[{_brief(level)}]", 0.0, MAX_INTERVAL_SCALE, low_open=True)
        out[_text(name, f"{where} key")] = checked
    return out


def _optional_fp16(value: Any, where: str) -> int | None:
    return None if value is None else _int(value, where, 0, 64)


SCHEMA: dict[str, Callable[[Any, str], Any]] = {
    "recommended_config": _recommended_config,
    "recommended_configs": _recommended_configs,
    "feature_network": _text,
    "image_preparation": _image_preparation,
    "interval_scales": _interval_scales,
    "interval_factors": _interval_factors,
    "training": _dict,
    "training_config": _dict,
    "quality": _dict,
    "iterations": _int,
    "images_seen": _int,
    "wall_seconds": lambda v, w: _number(v, w, 0.0, 1e12),
    "data": lambda v, w: _plain_text(v, w),
    "source_format": _text,
    "class_name": _text,
    "num_fp16_res": _optional_fp16,
}
"""Known metadata keys and their checks (each returns the value to keep)."""


def _plain_text(value: Any, where: str) -> str:
    if type(value) is not str:
        raise _Fail(f"{where} must be a string, got {_brief(value)}")
    return value


def _check_plain(value: Any, where: str) -> None:
    """Plain data only, iteratively (no recursion on file data), at most MAX_DEPTH deep and MAX_ITEMS
    values in all (counted when a container is opened, so at most MAX_ITEMS wait to be checked)."""
    pending: list[tuple[Any, str, int]] = [(value, where, 0)]
    seen = 1
    while pending:
        item, path, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise _Fail(f"{path} nests deeper than {MAX_DEPTH} levels")
        kind = type(item)
        if item is None or kind in (bool, int, float, str):
            continue
        if kind not in (list, tuple, dict):
            raise _Fail(f"{path} is {_brief(item)}; metadata must be plain data (numbers, strings, lists, dicts)")
        seen += len(item)
        if seen > MAX_ITEMS:
            raise _Fail(f"{where} holds more than {MAX_ITEMS} values (shared containers counted at every use)")
        if kind is dict:
            for k, v in item.items():
                if type(k) is not str:
                    raise _Fail(f"{path} has a key that is {_brief(k)}, not a string")
                pending.append((v, f"{path}.{k[:40]}", depth + 1))
        else:
            pending.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item))


def validate_metadata(metadata: Any, source: str | Path | None = None) -> dict[str, Any]:
    """The checked metadata dict (None gives ``{}``); a ``CheckpointError`` naming the file and key
    for anything outside the schema in this module's docstring."""
    if metadata is None:
        return {}
    try:
        if type(metadata) is not dict:
            raise _Fail(f"metadata must be a dict, got {_brief(metadata)}")
        _check_plain(metadata, "metadata")
        out: dict[str, Any] = {}
        for key, value in metadata.items():
            check = SCHEMA.get(key)
            out[key] = value if check is None else check(value, f"metadata.{key}")
        return out
    except _Fail as err:
        raise CheckpointError(f"{describe(source)}: {err}") from None
