"""HTTP and WebSocket layer: thin handlers that parse, authorize, call a service, return."""
