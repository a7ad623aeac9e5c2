"""What every `callbridge` subcommand gets as `ctx.obj`: the settings and (lazily) the store."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import click
from sqlalchemy import Engine

from bridge.config import ConfigError, Settings, load_config
from bridge.store.engine import make_engine


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
        from bridge.store.migrate import upgrade

        engine = make_engine(self.config.database.url)
        upgrade(engine)
        return engine
