"""The HTTP side of the daemon: app factory, error handling, health and metrics."""
