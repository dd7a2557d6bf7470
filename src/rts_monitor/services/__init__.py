"""Which OS services are watched on each device, and what happens when one stops (docs/services.md)."""
