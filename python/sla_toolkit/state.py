"""``sla_attention.pt`` from Python, without pickle.

``save_sla_state`` writes SimpleTuner's exact payload (``settings``, ``state``, ``version``, plus our
``sla_toolkit`` extension key) through the project's durable writer: a temp file in the same folder,
fsync, re-read and validate, rename. ``load_sla_state`` reads it back through the hardened reader
(bounded zip, CRC32 checked, a strict pickle machine with an allowlist): it returns what
``torch.load(path, weights_only=True)`` returns for a valid file, and refuses anything else with one
line (:class:`SlaStateError`). Both run in C++ (``sla::save_state`` / ``sla::load_state`` in
``libsla_ops.so``, src/sla/ops/state_ops.cpp). A path ending in ``.safetensors`` is the pickle-free
twin (same tensors, settings as JSON metadata).

The payload, as SimpleTuner writes it (../shared/docs/sla-format.md)::

    {"settings": {"topk": 0.2, "feature_map": "softmax", "blkq": 64, "blkk": 64, "tie_feature_map_qk": True},
     "state": {"128:bf16": {"proj_l.weight": float32 [128, 128], "proj_l.bias": float32 [128]}},
     "version": 1,
     "sla_toolkit": {"variant": "all", "writer": "sla-toolkit 0.1.0"}}   # ours; SimpleTuner ignores it
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import torch

from . import _library

__all__ = ["SlaStateError", "DEFAULT_SETTINGS", "save_sla_state", "load_sla_state"]

EXTENSION_KEY = "sla_toolkit"
# SimpleTuner's defaults for the five settings, which are also the public module's constructor defaults.
DEFAULT_SETTINGS = {"topk": 0.2, "feature_map": "softmax", "blkq": 64, "blkk": 64, "tie_feature_map_qk": True}
_WEIGHT, _BIAS = "proj_l.weight", "proj_l.bias"


class SlaStateError(ValueError):
    """An SLA state file or payload that cannot be read or written; the message is one line with a
    code and a place, e.g. ``E_CRC: crc mismatch in sla_attention/data/0``."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _ops():
    _library.load()
    return torch.ops.sla


def _writer() -> str:
    from . import __version__  # the package's own version; imported late (this module is part of it)
    return f"sla-toolkit {__version__}"


def _tensor_pair(key: str, value: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(value, torch.nn.Module):
        value = value.state_dict()
    if not isinstance(value, Mapping):
        raise SlaStateError(f"E_SCHEMA: state entry is a {type(value).__name__}, not a dict of proj_l tensors in state/{key}")
    extra = sorted(set(value) - {_WEIGHT, _BIAS})
    if extra:
        raise SlaStateError(f"E_SCHEMA: unexpected tensor '{extra[0]}' (an entry holds proj_l.weight and proj_l.bias) in state/{key}")
    for name in (_WEIGHT, _BIAS):
        if not isinstance(value.get(name), torch.Tensor):
            raise SlaStateError(f"E_SCHEMA: '{name}' is missing or not a tensor in state/{key}")
    return value[_WEIGHT], value[_BIAS]


def _settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    merged = dict(DEFAULT_SETTINGS)
    if settings is not None:
        unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
        if unknown:
            raise SlaStateError(f"E_SCHEMA: unknown setting '{unknown[0]}' (settings are {', '.join(DEFAULT_SETTINGS)}) in settings")
        merged.update(settings)
    checks = {"topk": (int, float), "feature_map": str, "blkq": int, "blkk": int, "tie_feature_map_qk": bool}
    for name, kind in checks.items():
        value = merged[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise SlaStateError(f"E_SCHEMA: setting '{name}' has the wrong type ({type(value).__name__}) in settings")
    return merged


def save_sla_state(path: str | os.PathLike, state: Mapping[str, Any], settings: Mapping[str, Any] | None = None, *,
                   variant: str | None = None, extension: Mapping[str, Any] | None = None) -> None:
    """Writes ``path`` (``sla_attention.pt``, or the twin when it ends in ``.safetensors``) atomically.

    ``state`` maps ``"<head_dim>:<dtype token>"`` to a module or its ``state_dict()`` (``proj_l.weight``
    [D, D], ``proj_l.bias`` [D], any dtype or device; stored as CPU float32). It may also be a whole
    payload as SimpleTuner builds it (``{"settings", "state", "version"[, "sla_toolkit"]}``): then its
    settings and extension are used. Settings missing from ``settings`` take SimpleTuner's defaults.
    The extension records ``writer`` (this package) and, when given, ``variant`` ("all" | "complement");
    ``extension`` adds flat str/int/float/bool items. Raises :class:`SlaStateError` on a payload the
    reader would refuse (the file is then untouched).
    """
    ext: dict[str, Any] = {}
    if isinstance(state.get("state"), Mapping):  # a whole payload: state keys are "<D>:<dtype>", never "state"
        payload = state
        if payload.get("version", 1) != 1:
            raise SlaStateError(f"E_SCHEMA: this writer writes version 1, the payload says {payload.get('version')!r} in version")
        if settings is None:
            settings = payload.get("settings")
        if isinstance(payload.get(EXTENSION_KEY), Mapping):
            ext.update(payload[EXTENSION_KEY])
        state = payload["state"]
    if extension is not None:
        ext.update(extension)
    if variant is not None:
        ext["variant"] = variant
    ext["writer"] = _writer()
    s = _settings(settings)
    keys, weights, biases = [], [], []
    for key, value in state.items():
        if not isinstance(key, str):
            raise SlaStateError(f"E_SCHEMA: state key {key!r} is not a string in state")
        weight, bias = _tensor_pair(key, value)
        keys.append(key)
        weights.append(weight.detach())
        biases.append(bias.detach())
    try:
        _ops().save_state(os.fspath(path), float(s["topk"]), s["feature_map"], s["blkq"], s["blkk"],
                          s["tie_feature_map_qk"], keys, weights, biases, json.dumps(ext))
    except RuntimeError as exc:
        raise SlaStateError(_one_line(exc)) from None


def load_sla_state(path: str | os.PathLike) -> dict[str, Any]:
    """Reads ``path`` (``sla_attention.pt`` or its ``.safetensors`` twin) through the hardened reader.

    Returns the payload as ``torch.load(path, weights_only=True)`` would: ``settings`` (all five
    keys; a file lacking ``tie_feature_map_qk`` gets SimpleTuner's default ``True``), ``state``
    (CPU float32 tensors, file order), ``version`` and, when the file has it, ``sla_toolkit``.
    Raises :class:`SlaStateError` with one line for a file that is damaged, hostile or not an SLA
    payload; forward-compatible extras that SimpleTuner ignores are read past (``sla-ckpt verify``
    reports them).
    """
    try:
        (topk, feature_map, blkq, blkk, tie, version, ext_json, keys, weights,
         biases) = _ops().load_state(os.fspath(path))
    except RuntimeError as exc:
        raise SlaStateError(_one_line(exc)) from None
    payload: dict[str, Any] = {
        "settings": {"topk": topk, "feature_map": feature_map, "blkq": blkq, "blkk": blkk, "tie_feature_map_qk": tie},
        "state": {key: {_WEIGHT: w, _BIAS: b} for key, w, b in zip(keys, weights, biases)},
        "version": version,
    }
    if ext_json:
        payload[EXTENSION_KEY] = json.loads(ext_json)
    return payload
