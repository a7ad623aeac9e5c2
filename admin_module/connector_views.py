"""The panel's per-connector settings: `/admin/connectors/<name>` (form, save) and `.../test` (check()).

Saved values go to the settings store as `connectors.<name>.<key>` (plus `connectors.<name>.enabled`); the
daemon and the web workers pick them up within seconds, turning a connector on included
(`bridge.connectors_runtime.LiveConnector`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Response, flash, g, redirect, render_template, request, url_for
from sqlalchemy import Engine

from admin_module import auth
from admin_module.connector_forms import (
    CLEAR_PREFIX,
    ENABLED,
    FieldSpec,
    Submission,
    build_form,
    field_specs,
    form_fields,
    read_submission,
    secret_state,
    validate,
)
from admin_module.language import panel_language
from admin_module.manifest_view import card
from bridge.config import Settings
from bridge.connector_api import Closeable, Connector, DeliveryError
from bridge.connector_api.http import redact
from bridge.connectors_runtime import build_bound, context_for, is_enabled
from bridge.registry import ConnectorConfigError, available_connectors
from bridge.settings_store import SettingsError, SettingsStore

log = logging.getLogger(__name__)

Translate = Callable[..., str]


def register_connector_routes(
    bp: Blueprint, *, engine: Engine, settings: Settings, settings_store: SettingsStore, t: Translate
) -> None:
    """Add the connector settings pages to the admin blueprint (permission "connectors").

    `settings` are the configured settings; what applies now (saved panel values included) is read from
    `settings_store` on every request.
    """

    def error(status: int, message: str) -> Response:
        body = render_template("admin/error.html", message=message, status=status)
        return Response(body, status=status, mimetype="text/html")

    def connector_class(name: str) -> type[Connector] | None:
        return available_connectors().get(name)

    def fixed_options(name: str) -> frozenset[str]:
        prefix = f"connectors.{name}."
        return frozenset(key[len(prefix) :] for key in settings_store.fixed if key.startswith(prefix))

    def current(name: str) -> tuple[Mapping[str, Any], bool]:
        """The connector's effective section and whether it is on."""
        sections = settings_store.effective().connectors
        section = sections.get(name)
        return (section or {}), is_enabled(section)

    def page(
        name: str,
        cls: type[Connector],
        *,
        submission: Submission | None = None,
        result: tuple[bool, str] | None = None,
        status: int = 200,
    ) -> Response:
        manifest = getattr(cls, "manifest", None)
        language = panel_language()
        specs = field_specs(cls.config_model, language, manifest.settings if manifest is not None else None)
        section, enabled = current(name)
        form = build_form(
            specs, section, enabled=enabled, formdata=request.form if submission is not None else None
        )
        body = render_template(
            "admin/connector_edit.html",
            name=name,
            card=card(cls, language),
            doc=(cls.config_model.__doc__ or "").strip(),
            fields=form_fields(form, specs),
            enabled_field=form[ENABLED],
            fixed=fixed_options(name),
            secrets=secret_state(specs, section),
            clear_prefix=CLEAR_PREFIX,
            errors=submission.errors if submission else {},
            general=submission.general if submission else [],
            result=result,
        )
        return Response(body, status=status, mimetype="text/html")

    def submitted(name: str, specs: list[FieldSpec]) -> Submission:
        section, enabled = current(name)
        return read_submission(specs, request.form, section, fixed=fixed_options(name), enabled_now=enabled)

    def checked(cls: type[Connector], submission: Submission) -> bool:
        """Validate with the model, then build it (a connector may reject a combination)."""
        config = validate(cls.config_model, submission)
        if config is None:
            return False
        try:
            _close(cls(config))
        except (ValueError, TypeError) as exc:
            submission.general.append(str(exc))
            return False
        return True

    @bp.get("/connectors/<name>")
    @auth.requires("connectors")
    def connector_edit(name: str) -> Any:
        cls = connector_class(name)
        if cls is None:
            return error(404, t("conncfg_unknown", name=name))
        return page(name, cls)

    def posted(name: str, *, validate_disabled: bool) -> tuple[type[Connector], Submission] | Response:
        """The connector class and the form as sent, or the error page to answer with (404, 400)."""
        cls = connector_class(name)
        if cls is None:
            return error(404, t("conncfg_unknown", name=name))
        submission = submitted(name, field_specs(cls.config_model))
        if submission.refused:
            return error(400, t("conncfg_refused", keys=", ".join(submission.refused)))
        if (submission.enabled or validate_disabled) and not checked(cls, submission):
            return page(name, cls, submission=submission, status=400)
        return cls, submission

    @bp.post("/connectors/<name>")
    @auth.requires("connectors")
    def connector_save(name: str) -> Any:
        found = posted(name, validate_disabled=False)
        if isinstance(found, Response):
            return found
        cls, submission = found
        try:
            settings_store.save({f"connectors.{name}.{k}": v for k, v in submission.updates.items()})
        except SettingsError as exc:
            return error(400, str(exc))
        log.info(
            "admin.connector_saved by=%s connector=%s enabled=%s keys=%s",
            g.admin_user.username,
            name,
            submission.enabled,
            ",".join(sorted(submission.updates)),
        )
        flash(t("conncfg_saved"), "ok")
        return redirect(url_for("admin.connector_edit", name=name))

    @bp.post("/connectors/<name>/test")
    @auth.requires("connectors")
    def connector_test(name: str) -> Any:
        found = posted(name, validate_disabled=True)
        if isinstance(found, Response):
            return found
        cls, submission = found
        result = run_check(name, submission.section)
        log.info("admin.connector_test by=%s connector=%s ok=%s", g.admin_user.username, name, result[0])
        return page(name, cls, submission=submission, result=result)

    def run_check(name: str, section: Mapping[str, Any]) -> tuple[bool, str]:
        """Build the connector from the (unsaved) section and call its check(), in plain words."""
        connector: Connector | None = None
        try:
            context = context_for(name, settings_store.effective(), engine)
            connector = build_bound(name, section, context, force=True)
            if connector is None:  # cannot happen with force; kept for the type checker
                return False, t("conncfg_unknown", name=name)
            return True, t("conncfg_test_ok", result=connector.check())
        except (DeliveryError, ConnectorConfigError) as exc:
            return False, t("conncfg_test_failed", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a connector's unexpected failure is reported, not raised
            log.warning("connector check raised connector=%s error=%s", name, type(exc).__name__)
            return False, t("conncfg_test_failed", error=redact(f"{type(exc).__name__}: {exc}", 300))
        finally:
            _close(connector)


def _close(connector: Connector | None) -> None:
    """Release what a connector built only for checking holds (a shop's engine, an HTTP session)."""
    if isinstance(connector, Closeable):
        connector.close()
