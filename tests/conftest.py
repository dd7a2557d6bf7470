"""Fixtures live in fix_*.py plugins (see pyproject addopts); factories in factories.py."""

import os

# Every process the tests start (servers, agents, CLI) runs in test mode: development secrets
# generated in its state dir and the fault-injection drills allowed (core/settings.py, RTS_ENV).
os.environ["RTS_ENV"] = "test"
