"""Command-line flags checked by the same schema types as the files (``model.schemas.FLAG_TYPES``).

``coldstart compare --threshold nan`` must not switch the gate off where ``rel_threshold = nan`` in
compare.toml is refused: a flag is parsed by the type the file's key has (finite, in range), and a bad
value is argparse's usage error (exit 2) naming the flag, the value and what is allowed.
pydantic is imported only when such a flag is given.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def checked(kind: str, example: str) -> Callable[[str], object]:
    """An argparse ``type=`` for a flag of *kind* (``fraction``, ``floor_s``, ``alpha``, ``min_samples``,
    ``timeout_s``, ``count``, ``count0``, ``positive``, ``nonnegative``, ``name``, ``machine``); *example* shows a good value."""
    def parse(text: str) -> object:
        from pytest_coldstart.model import schemas

        try:
            return schemas.parse_flag(kind, text, example)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = kind
    return parse
