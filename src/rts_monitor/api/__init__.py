"""The web layer: the app factory, the dependencies handlers ask for, the one error mapping, the
OpenAPI additions and /health. Handlers live in each concern's routes.py."""
