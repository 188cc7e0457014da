"""JSON read strictly: a key given twice in one object is an error.

``json.loads`` keeps the last of two equal keys without a word, so a repeated
"rows" in a seat map would drop seats and a repeated "roles" in a principals
file would quietly win. Both files are read with ``loads`` here.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["RepeatedKey", "loads"]


class RepeatedKey(ValueError):
    """A key appears twice in one JSON object."""


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise RepeatedKey(f"the key {key!r} appears twice in one object")
        result[key] = value
    return result


def loads(text: str) -> Any:
    """``json.loads``, refusing a repeated key (RepeatedKey, a ValueError)."""
    return json.loads(text, object_pairs_hook=_no_repeated_keys)
