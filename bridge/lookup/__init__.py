"""Caller cards: every connector that can look a number up is asked in parallel, under a deadline;
the answers are merged and cached."""

from bridge.lookup.card import Card, merge
from bridge.lookup.service import Lookup, LookupService, number_key

__all__ = ["Card", "Lookup", "LookupService", "merge", "number_key"]
