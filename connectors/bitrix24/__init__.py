"""Bitrix24: external-call card, call log, missed-call tasks, records, click-to-call, caller lookup.

See docs/connectors/bitrix24.md.
"""

from connectors.bitrix24.client import Bitrix24Client, Command
from connectors.bitrix24.config import Bitrix24Config
from connectors.bitrix24.connector import Bitrix24Connector

__all__ = ["Bitrix24Client", "Bitrix24Config", "Bitrix24Connector", "Command"]
