"""The wire format between the checker and the student server: plain data only, rebuilt from bytes.

A message is a JSON header plus binary blobs. Values are encoded as a tree of JSON types; a NumPy array travels as the
bytes of ``np.save(..., allow_pickle=False)`` and is rebuilt with ``np.load(..., allow_pickle=False)``, so whatever
arrives is a plain ``np.ndarray`` of a numeric dtype: no subclass, no object that overrides ``__eq__``, no pickle.
Anything else (an ndarray subclass, an object-dtype array, an object of the student's) is not encoded: it becomes an
``Opaque`` marker naming its type, which the checker refuses with a message.

Frames are ``8-byte length + JSON + blobs``; a frame larger than ``MAX_FRAME`` is refused so that a student cannot
make the checker allocate without bound.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct

import numpy as np

MAX_FRAME = 512 * 1024 * 1024

# How much of a student's text (an exception's class name or message, a type's name) a verdict may quote: the checker
# cuts what the student server sends to these lengths, and the server cuts too (it is the student's process, so only
# the checker's cut counts). A verdict as a whole is cut at VERDICT_CHARS.
NAME_CHARS = 200
MESSAGE_CHARS = 2000
VERDICT_CHARS = 20_000
CUT_MARK = " ... (cut)"


def cut(text, limit: int) -> str:
    """``text`` as a str of at most ``limit`` characters, plus a mark saying it was cut when it was longer."""
    text = text if isinstance(text, str) else str(text)
    return text if len(text) <= limit else text[:limit] + CUT_MARK


class WireError(Exception):
    """The other side sent something that is not a well-formed frame (or nothing: end of file)."""


class Opaque:
    """Stands for a value the sender could not send as plain data. Compares equal to nothing."""

    def __init__(self, type_name: str, why: str):
        self.type_name = type_name
        self.why = why

    def __repr__(self) -> str:
        return f"<{self.type_name}: {self.why}>"

    def __eq__(self, other) -> bool:
        return False

    __hash__ = object.__hash__


def _type_name(v) -> str:
    t = type(v)
    return cut(t.__name__ if t.__module__ in ("builtins", None) else f"{t.__module__}.{t.__qualname__}", NAME_CHARS)


def encode_value(v, blobs: list, depth: int = 0, special=None):
    """A JSON-able tree for v; arrays go to blobs. Never calls the value's own methods except on exact types.

    ``special(v)`` may return ``(kind, state)`` for objects the receiver knows how to rebuild from plain state (the
    sublayer and norm callables that chapter 6's checks pass); the receiver must name the kinds it accepts.
    """
    if special is not None and (rebuilt := special(v)) is not None:
        kind, state = rebuilt
        return {"rebuild": kind, "state": encode_value(state, blobs, depth + 1)}
    if depth > 20:
        return {"opaque": _type_name(v), "why": "nested too deeply"}
    t = type(v)
    if v is None or t is bool or t is str:
        return v
    if t is int:
        return {"int": str(v)}  # JSON numbers lose big ints in other readers; a string does not
    if t is float:
        return {"float": repr(v)} if not math.isfinite(v) else v
    if t is tuple or t is list:
        return {"tuple" if t is tuple else "list": [encode_value(x, blobs, depth + 1, special) for x in v]}
    if t is dict:
        if not all(type(k) is str for k in v):
            return {"opaque": "dict", "why": "a dict whose keys are not all strings"}
        return {"dict": {k: encode_value(x, blobs, depth + 1, special) for k, x in v.items()}}
    if t is np.ndarray or isinstance(v, np.generic) and type(v).__module__ == "numpy":
        arr = np.asarray(v) if t is not np.ndarray else v
        if arr.dtype.kind not in "biufc" or arr.dtype.fields is not None:
            return {"opaque": f"numpy array of dtype {arr.dtype}", "why": "not a numeric dtype"}
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)  # keeps 0-d arrays 0-d (ascontiguousarray would not)
        blobs.append(buf.getvalue())
        return {"array": len(blobs) - 1, "scalar": t is not np.ndarray}
    if isinstance(v, np.ndarray):
        return {"opaque": _type_name(v), "why": "a subclass of numpy.ndarray"}
    return {"opaque": _type_name(v), "why": "not plain data"}


def decode_value(tree, blobs: list, rebuild: dict | None = None):
    if tree is None or isinstance(tree, (bool, str, float)):
        return tree
    if isinstance(tree, int):  # only from a hand-written sender; ours sends {"int": ...}
        return tree
    if not isinstance(tree, dict) or len(tree) == 0:
        raise WireError(f"malformed value {tree!r:.80}")
    if "int" in tree:
        return int(tree["int"])
    if "float" in tree:
        return float(tree["float"])
    if "tuple" in tree:
        return tuple(decode_value(x, blobs, rebuild) for x in tree["tuple"])
    if "list" in tree:
        return [decode_value(x, blobs, rebuild) for x in tree["list"]]
    if "dict" in tree:
        return {str(k): decode_value(x, blobs, rebuild) for k, x in tree["dict"].items()}
    if "array" in tree:
        arr = np.load(io.BytesIO(blobs[int(tree["array"])]), allow_pickle=False)
        if type(arr) is not np.ndarray or arr.dtype.kind not in "biufc":
            raise WireError("an array that is not a plain numeric ndarray")
        return arr[()] if tree.get("scalar") else arr
    if "rebuild" in tree:
        if not rebuild or tree["rebuild"] not in rebuild:
            raise WireError(f"this side rebuilds no {tree['rebuild']!r:.40}")
        return rebuild[tree["rebuild"]](decode_value(tree["state"], blobs))
    if "opaque" in tree:
        return Opaque(cut(tree["opaque"], NAME_CHARS), cut(tree.get("why", ""), NAME_CHARS))
    raise WireError(f"malformed value {tree!r:.80}")


def pack(header: dict, blobs: list[bytes]) -> bytes:
    head = json.dumps({**header, "blobs": [len(b) for b in blobs]}).encode()
    body = struct.pack("<Q", len(head)) + head + b"".join(blobs)
    return struct.pack("<Q", len(body)) + body


def unpack(body: bytes) -> tuple[dict, list[bytes]]:
    (n,) = struct.unpack_from("<Q", body, 0)
    header = json.loads(body[8:8 + n])
    blobs, at = [], 8 + n
    for size in header.pop("blobs", []):
        blobs.append(body[at:at + size])
        at += size
    if at != len(body):
        raise WireError("frame length does not match its blobs")
    return header, blobs


def read_exact(fd: int, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise WireError("end of file")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> tuple[dict, list[bytes]]:
    (size,) = struct.unpack("<Q", read_exact(fd, 8))
    if size > MAX_FRAME:
        raise WireError(f"a frame of {size} bytes (the limit is {MAX_FRAME})")
    return unpack(read_exact(fd, size))


def write_frame(fd: int, header: dict, blobs: list[bytes] = ()) -> None:
    data = memoryview(pack(header, list(blobs)))
    while data:
        n = os.write(fd, data)
        data = data[n:]
