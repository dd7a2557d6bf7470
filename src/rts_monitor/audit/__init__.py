"""The audit log of staff actions: who changed what, when, before and after; append-only."""
