"""Staged agent rollouts: one approved decision updates a fleet's agents in waves, halting by
itself when updates fail."""
