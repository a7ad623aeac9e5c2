"""What every `callbridge` subcommand gets as `ctx.obj`: the settings and (lazily) the store."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import click
from sqlalchemy import Engine

from bridge.config import ConfigError, Settings, load_config
from bridge.store.opening import StoreUnavailable, open_store


@dataclass
class AppContext:
    """What every subcommand gets as `ctx.obj`: the settings and (lazily) the store."""

    config_path: str | None

    @cached_property
    def config(self) -> Settings:
        try:
            return load_config(self.config_path)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None

    @cached_property
    def engine(self) -> Engine:
        try:
            return open_store(self.config.database.url)
        except StoreUnavailable as exc:
            raise click.ClickException(str(exc)) from None
