"""The read API: calls and their legs as JSON, behind a bearer token."""
