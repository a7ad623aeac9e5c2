"""Turning stored raw events into calls, legs and outbox rows."""
