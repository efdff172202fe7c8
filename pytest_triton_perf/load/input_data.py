"""perf_analyzer's JSON input-data files, read into input sets (dicts of numpy arrays).

Format (perf_analyzer's ``--input-data file.json``)::

    {"data": [
        {"INPUT0": [1, 2, 3, 4]},                              # flat row-major values
        {"INPUT0": {"content": [1, 2, 3, 4], "shape": [2, 2]}},  # values with a shape
        {"INPUT0": {"b64": "AACAPwAAAEA="}},                   # raw bytes, base64
        ...
    ]}

Each entry is one sample (no batch dimension); entries are sent in turn. Values of BYTES
inputs are strings; their ``b64`` form holds the 4-byte length prefixes, as perf_analyzer
requires. A list of lists (sequence streams) is not supported here.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.utils import deserialize_bytes_tensor

from pytest_triton_perf.errors import InputSpecError
from pytest_triton_perf.load.model_spec import ModelSpec, numpy_dtype, resolve_dims


def _deserialize_bytes(raw: bytes, where: str) -> np.ndarray:
    try:
        return deserialize_bytes_tensor(raw)
    except struct.error:
        raise InputSpecError(
            f"{where}: b64 BYTES data ends inside an element (each element is a 4-byte"
            " little-endian length, then that many bytes)"
        ) from None


def _array_for(
    spec: ModelSpec,
    name: str,
    value: Any,
    dims: tuple[int, ...],
    where: str,
) -> np.ndarray:
    t = spec.input(name)
    shape: tuple[int, ...] | None = None
    if isinstance(value, Mapping):
        if "shape" in value:
            shape = tuple(int(d) for d in value["shape"])
        if "b64" in value:
            try:
                raw = base64.b64decode(str(value["b64"]), validate=True)
            except (binascii.Error, ValueError) as e:
                raise InputSpecError(f"{where}: invalid base64: {e}") from None
            if t.datatype == "BYTES":
                flat = _deserialize_bytes(raw, where)
            else:
                dtype = _dtype(t.datatype, where).newbyteorder("<")
                if len(raw) % dtype.itemsize:
                    raise InputSpecError(
                        f"{where}: {len(raw)} bytes is not a whole number of {t.datatype} values"
                    )
                flat = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
        elif "content" in value:
            flat = _values(t.datatype, value["content"], where)
        else:
            raise InputSpecError(
                f"{where}: expected a list of values, or an object with 'content' or 'b64'"
            )
    else:
        flat = _values(t.datatype, value, where)
    if shape is None:
        if any(d == -1 for d in dims):
            raise InputSpecError(
                f"{where}: input '{name}' has dynamic shape {list(t.dims)}; give "
                f'{{"content": [...], "shape": [...]}} in the file or shapes={{"{name}": [...]}}'
            )
        shape = dims
    size = int(np.prod(shape, dtype=np.int64))
    if flat.size != size:
        raise InputSpecError(
            f"{where}: input '{name}' has {flat.size} values, shape {list(shape)} needs {size}"
        )
    return flat.reshape(shape)


def _dtype(datatype: str, where: str) -> np.dtype[Any]:
    dtype = numpy_dtype(datatype)
    if dtype is None:
        raise InputSpecError(f"{where}: datatype {datatype} has no numpy form to read values into")
    return dtype


def _values(datatype: str, content: Any, where: str) -> np.ndarray:
    if not isinstance(content, list):
        raise InputSpecError(f"{where}: expected a list of values, got {type(content).__name__}")
    flat = np.array(content, dtype=object).ravel()
    if datatype == "BYTES":
        return np.array([str(v).encode() if not isinstance(v, bytes) else v for v in flat], object)
    try:
        return np.array(flat.tolist(), dtype=_dtype(datatype, where))
    except (TypeError, ValueError) as e:
        raise InputSpecError(f"{where}: values are not {datatype}: {e}") from None


def load_input_data(
    path: str | Path,
    spec: ModelSpec,
    shapes: Mapping[str, Sequence[int]] | None = None,
) -> list[dict[str, np.ndarray]]:
    """Input sets of a perf_analyzer JSON file, validated against ``spec``."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputSpecError(f"model '{spec.name}': cannot read input data file {p}: {e}") from None
    except json.JSONDecodeError as e:
        raise InputSpecError(
            f"model '{spec.name}': input data file {p} is not JSON: {e.msg} at line {e.lineno}"
            f" column {e.colno}"
        ) from None
    entries = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InputSpecError(
            f"model '{spec.name}': input data file {p} needs a non-empty \"data\" list"
            ' (perf_analyzer format: {"data": [{"INPUT0": [...]}, ...]})'
        )
    dims = resolve_dims(spec, shapes)
    out = []
    for k, entry in enumerate(entries):
        where = f"{p} data[{k}]"
        if isinstance(entry, list):
            raise InputSpecError(f"{where}: sequence streams (lists of lists) are not supported")
        out.append(input_set(entry, spec, shapes, where=where, dims=dims))
    return out


def input_set(
    entry: Any,
    spec: ModelSpec,
    shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    where: str,
    dims: Mapping[str, tuple[int, ...]] | None = None,
) -> dict[str, np.ndarray]:
    """One input set written as an entry of perf_analyzer's ``data`` list (input name ->
    flat values, ``{"content": ..., "shape": ...}`` or ``{"b64": ...}``), typed by the
    model's metadata; ``where`` names it in errors (a YAML suite's inputs use it too)."""
    if not isinstance(entry, Mapping):
        raise InputSpecError(f"{where}: expected an object of input name -> values")
    if dims is None:
        dims = resolve_dims(spec, shapes)
    return {
        name: _array_for(spec, name, value, dims[spec.input(name).name], f"{where}[{name!r}]")
        for name, value in entry.items()
    }
