"""Fixtures live in fix_*.py plugins (see pyproject addopts); factories in factories.py."""
