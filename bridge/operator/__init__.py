"""The operator page (`/operator`): live popups with the caller's card, today's calls, click-to-call."""

from bridge.operator.blueprint import make_operator

__all__ = ["make_operator"]
