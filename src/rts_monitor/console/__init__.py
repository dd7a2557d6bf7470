"""The operator console: server-rendered pages at /console/ over the same services as the API."""
