"""Fixtures of the agent's tests; the helpers live in ``e2e_support`` (importable by tests)."""

from e2e_support import install_agent, world

__all__ = ["install_agent", "world"]
