"""Remote commands: typed params, approval, delivery by polling and WebSocket, results, timeouts."""
