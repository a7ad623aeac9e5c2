"""The telephony settings page: save, and test the connection to Mango (`/admin/settings`)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint, flash, g, redirect, render_template, url_for

from admin_module import auth
from admin_module.forms import TelephonyForm
from admin_module.pages.context import PageContext, log
from bridge.config import Settings
from bridge.config.model import MANGO_SOURCE_IPS
from bridge.pbx.port import PbxBadKey, PbxBadSignature, PbxError
from bridge.settings_store import SettingsError, parse_ip_list


def register(bp: Blueprint, ctx: PageContext) -> None:
    """Add the settings page, its save and its connection test to the admin blueprint."""
    store = ctx.store
    t = ctx.t

    def _effective_with(form: TelephonyForm) -> Settings:
        """The effective settings with the form's (unsaved) values applied where not fixed."""
        base = store.effective()
        mango = base.mango.model_dump()
        mango["api_salt"] = base.mango.api_salt.get_secret_value()
        if not store.is_fixed("mango.api_url") and form.api_url.data:
            mango["api_url"] = form.api_url.data.strip()
        if not store.is_fixed("mango.api_key") and form.api_key.data:
            mango["api_key"] = form.api_key.data.strip()
        if not store.is_fixed("mango.api_salt") and form.api_salt.data:
            mango["api_salt"] = form.api_salt.data.strip()
        if not store.is_fixed("mango.verify_tls"):
            mango["verify_tls"] = bool(form.verify_tls.data)
        return base.model_copy(update={"mango": type(base.mango).model_validate(mango)})

    def _fill(form: TelephonyForm) -> None:
        current = store.effective()
        panel = store.panel()
        form.provider.data = panel.provider
        form.api_url.data = current.mango.api_url
        form.api_key.data = current.mango.api_key
        form.verify_tls.data = current.mango.verify_tls
        form.ip_mode.data = "list" if current.mango.allowed_ips else "open"
        form.allowed_ips.data = "\n".join(current.mango.allowed_ips)
        form.softphone.data = panel.softphone
        form.recordings.data = panel.recordings
        form.timezone.data = panel.timezone
        form.frame_ancestors.data = panel.frame_ancestors

    def _show_fixed(form: TelephonyForm) -> None:
        """Fields fixed by the config file or the environment are disabled, so the browser never sends them:
        show their values in force again after a test or a refused save."""
        current = store.effective().mango
        for key, field in (
            ("mango.api_url", form.api_url),
            ("mango.api_key", form.api_key),
            ("mango.verify_tls", form.verify_tls),
        ):
            if store.is_fixed(key):
                field.data = getattr(current, key.split(".")[1])
        if store.is_fixed("mango.allowed_ips"):
            form.ip_mode.data = "list" if current.allowed_ips else "open"
            form.allowed_ips.data = "\n".join(current.allowed_ips)

    def _render_settings(
        form: TelephonyForm, result: tuple[bool, str] | None = None, status: int = 200
    ) -> Any:
        _show_fixed(form)
        return (
            render_template(
                "admin/settings.html",
                form=form,
                fixed=store.fixed,
                salt_set=bool(store.effective().mango.api_salt.get_secret_value()),
                mango_ips="\n".join(MANGO_SOURCE_IPS),
                result=result,
            ),
            status,
        )

    @bp.get("/settings")
    @auth.requires("settings")
    def settings_page() -> Any:
        form = TelephonyForm(formdata=None)
        _fill(form)
        return _render_settings(form)

    @bp.post("/settings")
    @auth.requires("settings")
    def settings_save() -> Any:
        form = TelephonyForm()
        if not form.validate():
            problems = "; ".join(f"{t(name)}: {', '.join(errs)}" for name, errs in form.errors.items())
            return _render_settings(form, (False, problems), 400)
        values: dict[str, Any] = {
            "mango.api_url": (form.api_url.data or "").strip() or None,
            "mango.api_key": (form.api_key.data or "").strip() or None,
            "mango.verify_tls": bool(form.verify_tls.data),
            "admin.provider": form.provider.data,
            "admin.softphone": form.softphone.data or "",
            "admin.recordings": bool(form.recordings.data),
            "admin.timezone": (form.timezone.data or "").strip() or "Europe/Moscow",
            "admin.frame_ancestors": " ".join((form.frame_ancestors.data or "").split()),
        }
        if form.api_salt.data:
            values["mango.api_salt"] = form.api_salt.data.strip()
        try:
            values["mango.allowed_ips"] = (
                parse_ip_list(form.allowed_ips.data or "") if form.ip_mode.data == "list" else []
            )
            try:
                ZoneInfo(values["admin.timezone"])
            except (ZoneInfoNotFoundError, ValueError):
                raise SettingsError(t("timezone_unknown", zone=values["admin.timezone"][:64])) from None
            values = {k: v for k, v in values.items() if not store.is_fixed(k)}
            store.save(values)
        except SettingsError as exc:
            return _render_settings(form, (False, str(exc)), 400)
        log.info("admin.settings saved by=%s keys=%s", g.admin_user.username, ",".join(sorted(values)))
        flash(t("saved"), "ok")
        return redirect(url_for("admin.settings_page"))

    @bp.post("/settings/test")
    @auth.requires("settings")
    def settings_test() -> Any:
        form = TelephonyForm()
        form.validate()
        candidate = _effective_with(form)
        result = check_connection(ctx, candidate)
        return _render_settings(form, result, 200 if result[0] else 502)


def check_connection(ctx: PageContext, candidate: Settings) -> tuple[bool, str]:
    """Ask Mango with `candidate`'s credentials: (ok, the line to show)."""
    t = ctx.t
    if not candidate.mango.api_key or not candidate.mango.api_salt.get_secret_value():
        return False, t("conn_incomplete")
    try:
        client = ctx.mango_client_factory(candidate)
        try:
            client.check()
        finally:
            client.close()
    except PbxBadSignature as exc:
        return False, f"{t('conn_bad_sign')} {exc}"
    except PbxBadKey as exc:
        return False, f"{t('conn_bad_key')} {exc}"
    except PbxError as exc:
        return False, t("conn_failed", reason=str(exc))
    except ValueError as exc:
        return False, t("conn_failed", reason=str(exc))
    return True, t("conn_ok")
