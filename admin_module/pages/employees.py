"""The employees page: extensions, panel users and each CRM's users; Mango and CRM imports, the extension
map (`/admin/employees`)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, g, jsonify, redirect, render_template, request, url_for
from sqlalchemy import select

from admin_module import auth
from admin_module.directory_sync import DirectorySync
from admin_module.forms import ActionForm, MappingForm
from admin_module.pages.context import PageContext, log
from admin_module.users import list_users, set_extension
from bridge.connector_api import DeliveryError
from bridge.crm_employees import import_crm_employees, imports_employees, mango_users_from
from bridge.ldap import DirectoryClient, LdapError
from bridge.ldap.sync import last_runs
from bridge.pbx.port import PbxError
from bridge.store.engine import reader
from bridge.store.schema import employees


def register(bp: Blueprint, ctx: PageContext) -> None:
    """Add the employees page and its import and map actions to the admin blueprint."""
    engine = ctx.engine
    t = ctx.t
    directory = DirectorySync(engine, lambda: ctx.store.effective().ldap)

    @bp.get("/employees")
    @auth.requires("employees")
    def employees_page() -> Any:
        with reader(engine).connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(select(employees).order_by(employees.c.extension))]
        users = list_users(engine)
        by_ext = {u.extension: u for u in users if u.extension}
        return render_template(
            "admin/employees.html",
            rows=rows,
            users=users,
            by_ext=by_ext,
            crm_maps=crm_maps(ctx),
            form=ActionForm(),
            ldap=ctx.store.effective().ldap,
            runs=last_runs(engine),
            syncing=directory.busy(),
        )

    @bp.post("/employees/sync-ldap")
    @auth.requires("employees")
    def employees_sync_ldap() -> Any:
        started = directory.start("panel")
        log.info("admin.employees directory sync by=%s started=%s", g.admin_user.username, started)
        if request.accept_mimetypes.best == "application/json":
            return jsonify({"started": started}), 202 if started else 409
        flash(t("directory_started") if started else t("directory_busy"), "ok" if started else "error")
        return redirect(url_for("admin.employees_page"))

    @bp.post("/employees/test-ldap")
    @auth.requires("employees")
    def employees_test_ldap() -> Any:
        """ "Test connection": bind with the directory settings and count the entries the filter finds."""
        try:
            with DirectoryClient(ctx.store.effective().ldap) as client:
                flash(client.check(), "ok")
        except LdapError as exc:
            flash(str(exc), "error")
        return redirect(url_for("admin.employees_page"))

    @bp.get("/employees/sync-ldap.json")
    @auth.requires("employees")
    def employees_sync_ldap_status() -> Any:
        runs = last_runs(engine, limit=1)
        return jsonify({"running": directory.busy(), "last": runs[0] if runs else None})

    @bp.post("/employees/import-crm")
    @auth.requires("employees")
    def employees_import_crm() -> Any:
        form = ActionForm()
        name = request.form.get("connector") or ""
        connector = ctx.running_connectors().get(name)
        if not form.validate() or connector is None or not imports_employees(connector):
            flash(t("import_failed", reason=name or "?"), "error")
            return redirect(url_for("admin.employees_page"))

        mango_users = mango_users_from(ctx.mango_client)
        try:
            lines = import_crm_employees(connector, mango_users)
        except (PbxError, DeliveryError, ValueError) as exc:
            flash(t("import_failed", reason=f"{name}: {exc}"), "error")
        else:
            log.info("admin.employees crm import by=%s connector=%s", g.admin_user.username, name)
            for line in lines[:30]:
                flash(line, "ok")
        return redirect(url_for("admin.employees_page"))

    @bp.post("/employees/import")
    @auth.requires("employees")
    def employees_import() -> Any:
        from admin_module.employees_sync import import_employees

        try:
            client = ctx.mango_client()
            try:
                done = import_employees(engine, client)
            finally:
                client.close()
            flash(
                t("imported", added=len(done.added), changed=len(done.updated), unchanged=done.unchanged),
                "ok",
            )
        except (PbxError, ValueError) as exc:
            flash(t("import_failed", reason=str(exc)), "error")
        return redirect(url_for("admin.employees_page"))

    @bp.post("/employees/map")
    @auth.requires("employees")
    def employees_map() -> Any:
        form = MappingForm()
        user_id = form.user_id.data
        set_extension(engine, form.extension.data, int(user_id) if user_id and user_id.isdigit() else None)
        flash(t("mapped"), "ok")
        return redirect(url_for("admin.employees_page"))


def crm_maps(ctx: PageContext) -> dict[str, dict[str, str]]:
    """Each connector's extension -> CRM user map (connectors that map no users are left out)."""
    maps: dict[str, dict[str, str]] = {}
    for name, connector in sorted(ctx.running_connectors().items()):
        try:
            mapped = connector.mapped_users()
        except Exception as exc:  # noqa: BLE001 - one CRM's broken state must not break the page
            log.warning("admin.employees %s map unreadable: %s", name, type(exc).__name__)
            continue
        if mapped or imports_employees(connector):
            maps[name] = mapped
    return maps
