"""JSON for bytes, which Avro data holds and JSON has no type for.

An Avro ``bytes`` or ``fixed`` field (a ``decimal`` too: logical types are read as their plain Avro type) decodes
to ``bytes``: data a processor reads from an Avro topic and passes on to a JSON one, or that ``eventbus consume``
prints, holds them. They are written as base64 text, which is what CloudEvents' ``data_base64`` holds and what the
Avro encoder reads back into bytes.
"""

from __future__ import annotations

import base64

import orjson


def json_default(value: object) -> object:
    """``orjson.dumps``'s ``default``: base64 text for bytes, TypeError for anything else."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def dumps(value: object) -> bytes:
    """``orjson.dumps`` that also writes bytes (as base64 text)."""
    return orjson.dumps(value, default=json_default)
