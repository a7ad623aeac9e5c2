"""The demo connector: caller cards from a table in the config, with an optional delay.

For demos (`callbridge simulate` rings, the operator page pops up a name) and for tests and benchmarks
that need a CRM that answers lookups at a known speed. See docs/operator.md.
"""

from connectors.demo.connector import DemoConfig, DemoConnector

__all__ = ["DemoConfig", "DemoConnector"]
