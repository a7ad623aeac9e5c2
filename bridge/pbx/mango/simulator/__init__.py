"""The Mango Office simulator: plays PBX notifications into the bridge and fakes Mango's command API.

- `Poster` posts signed notifications to the bridge's Mango receiver, with shuffling, duplicates,
  concurrency and a rate cap (`poster.py`).
- `CommandServer` answers the bridge's commands and queries like `app.mango-office.ru/vpbx/` and posts the
  results and events they cause back to the bridge (`command_server.py`).
- `generate_calls` builds many mixed calls for bursts and benchmarks (`generate.py`).
- `simulate` is the `callbridge simulate` command (`cli.py`).
The call shapes themselves come from `bridge.pbx.mango.scenarios`. See docs/simulator.md.
"""

from .command_server import CommandServer, ReceivedCommand
from .generate import generate_calls
from .poster import PlayReport, Poster, SendRecord
from .rate_limits import RATE_LIMIT_BODY, Limit, RateLimiter

__all__ = [
    "RATE_LIMIT_BODY",
    "CommandServer",
    "Limit",
    "PlayReport",
    "Poster",
    "RateLimiter",
    "ReceivedCommand",
    "SendRecord",
    "generate_calls",
]
