"""Where files that ship with the package live: in the wheel beside the code, or in the checkout.

The wheel force-includes ``sql/``, the agent's sources and installers under ``rts_monitor/``
(``pyproject.toml``, ``[tool.hatch.build.targets.wheel.force-include]``); an editable install
finds the same files at the top of the checkout. One lookup for both, so no module counts
``parents[…]`` from its own depth.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # .../rts_monitor


def checkout_root() -> Path | None:
    """The checkout this package runs from (editable install), if any."""
    candidate = PACKAGE_DIR.parents[1]
    if (candidate / "pyproject.toml").is_file() and (candidate / "sql").is_dir():
        return candidate
    return None


def find(packaged: str, in_checkout: str) -> Path | None:
    """``rts_monitor/<packaged>`` in a wheel, else ``<checkout>/<in_checkout>``; None if neither exists."""
    candidate = PACKAGE_DIR / packaged
    if candidate.exists():
        return candidate
    root = checkout_root()
    if root is not None and (root / in_checkout).exists():
        return root / in_checkout
    return None
