"""Events agents report (service_crashed, ...): stored per device; some update device state."""
