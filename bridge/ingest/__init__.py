"""Durable ingest: accepted PBX notifications are committed before they are acknowledged."""
