"""Tables on the terminal, shared by every concern's CLI subcommands."""

from __future__ import annotations

import json
from typing import Any


def print_table(rows: list[dict[str, Any]], *, as_json: bool = False) -> None:
    """Shared table printer for concerns' commands (``--json`` for machines)."""
    if as_json:
        print(json.dumps(rows, default=str, indent=2))
        return
    if not rows:
        print("(none)")
        return
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    print("  ".join("-" * widths[c] for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols))
