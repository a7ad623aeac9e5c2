"""The admin panel's Flask blueprint at `/admin`.

`make_admin_blueprint(settings, engine, originate=..., mango_client_factory=...)`: `originate(extension,
number) -> command_id` places click-to-call; `mango_client_factory(settings) -> MangoClient` builds a Mango
client from the *effective* settings (saved panel values applied), so saved settings apply without a restart.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from markupsafe import Markup
from sqlalchemy import Engine, select
from wtforms import ValidationError

from admin_module import auth, calllog, charts, recordings, stats
from admin_module.call_detail import register_call_detail_routes
from admin_module.callbacks import register_callback_routes
from admin_module.forms import ActionForm, CallbackForm, LangForm, LoginForm, MappingForm, TelephonyForm
from admin_module.i18n import translate
from admin_module.live import register_live_routes
from admin_module.missed import follow_ups
from admin_module.roles import can
from admin_module.settings_store import SettingsError, SettingsStore, parse_ip_list
from admin_module.users import authenticate, list_users, set_extension, set_lang
from bridge.api.calls_query import STATUSES
from bridge.config import Settings
from bridge.config.model import MANGO_SOURCE_IPS
from bridge.connector_api import Connector, DeliveryError
from bridge.connectors_runtime import is_enabled
from bridge.crm_employees import import_crm_employees, imports_employees, mango_users_from
from bridge.pbx.mango.client import MangoClient
from bridge.pbx.mango.errors import MangoBadKey, MangoBadSign, MangoError
from bridge.store.engine import reader
from bridge.store.schema import employees

log = logging.getLogger(__name__)

Originate = Callable[[str, str], str]
ClientFactory = Callable[[Settings], MangoClient]


def _tz(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def make_admin_blueprint(
    settings: Settings,
    engine: Engine,
    *,
    originate: Originate | None = None,
    mango_client_factory: ClientFactory,
    secret_key: str | None = None,
    secure_cookies: bool | None = None,
    store: SettingsStore | None = None,
    connectors_health: Callable[[], dict[str, Any]] | None = None,
    connectors: Callable[[], Mapping[str, Connector]] | None = None,
) -> Blueprint:
    """The panel at `/admin`.

    `originate`: click-to-call; None builds one on the effective settings. `mango_client_factory(settings)`:
    a Mango client (`bridge.connectors_runtime.mango_client`). `secret_key`: the shared security secret;
    None resolves it like the realtime tokens do (`bridge.realtime.auth.resolve_secret`). `secure_cookies`:
    None means True when `http.public_url` is https (then also SameSite=None, for a shop's iframe).
    `store`: the settings store shared with the rest of the app (so saved values apply everywhere).
    `connectors()`: the running connectors, for each CRM's extension -> user map on the employees page.
    """
    bp = Blueprint(
        "admin", __name__, url_prefix="/admin", template_folder="templates", static_folder="static"
    )
    settings_store = store or SettingsStore(engine, settings)
    if originate is None:
        # Click-to-call with the settings in force now (saved panel values apply without a restart).
        from bridge.commands.originate import OriginateService

        originate = OriginateService(
            engine,
            lambda: mango_client_factory(settings_store.effective()),
            region=settings.phones.default_region,
            line_number=settings.mango.line_number or None,
        )
    place_call: Originate = originate
    secure = settings.http.public_url.startswith("https://") if secure_cookies is None else secure_cookies

    @bp.record_once
    def _configure(state: Any) -> None:
        app: Flask = state.app
        if not app.secret_key:
            root = secret_key
            if root is None:
                from bridge.realtime.auth import resolve_secret

                root = resolve_secret(settings, engine)
            app.secret_key = auth.session_secret(root)
        app.config.setdefault("WTF_CSRF_TIME_LIMIT", 8 * 3600)
        app.config["WTF_CSRF_SSL_STRICT"] = False  # behind proxies/iframes the Referer is unreliable
        app.config["SESSION_COOKIE_HTTPONLY"] = True
        app.config["SESSION_COOKIE_SECURE"] = secure
        app.config["SESSION_COOKIE_SAMESITE"] = "None" if secure else "Lax"
        app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=12)
        app.jinja_env.autoescape = True

    limiter = auth.LoginLimiter(engine, auth.LoginLimits.from_settings(settings))

    def t(key: str, **values: object) -> str:
        user = g.get("admin_user")
        lang = user.lang if user is not None else request.accept_languages.best_match(["ru", "en"], "ru")
        return translate(lang, key, **values)

    def tz() -> ZoneInfo:
        return _tz(settings_store.panel().timezone)

    @bp.before_request
    def _before() -> Any:
        active = auth.load_session(engine)  # checked in the store on every request
        g.admin_user = active.user if active is not None else None
        g.admin_session = active
        if request.method == "POST":
            try:
                validate_csrf(request.form.get("csrf_token"))
            except ValidationError:
                return _error(400, t("csrf_failed"))
        return None

    @bp.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cache-Control", "no-store")
        # Framing: this origin, plus the shop admin origins saved in the settings (clickjacking guard).
        ancestors = " ".join(["'self'", *settings_store.panel().frame_ancestors.split()])
        response.headers.setdefault("Content-Security-Policy", f"frame-ancestors {ancestors}")
        return response

    def _error(status: int, message: str) -> Response:
        body = render_template("admin/error.html", message=message, status=status)
        return Response(body, status=status, mimetype="text/html")

    @bp.errorhandler(403)
    def _forbidden(_exc: Exception) -> Response:
        return _error(403, t("forbidden"))

    @bp.errorhandler(CSRFError)
    def _csrf(_exc: Exception) -> Response:
        return _error(400, t("csrf_failed"))

    @bp.app_template_filter("admin_time")
    def _time_filter(value: float | None) -> str:
        if value is None:
            return "—"
        return datetime.fromtimestamp(value, tz()).strftime("%Y-%m-%d %H:%M:%S")

    @bp.app_template_filter("admin_seconds")
    def _seconds_filter(value: float | None) -> str:
        return stats.fmt_seconds(value)

    live_config = register_live_routes(bp, settings=settings, engine=engine, t=t)
    register_callback_routes(bp, engine=engine)
    register_call_detail_routes(bp, engine=engine, settings=settings, connectors=connectors)

    @bp.context_processor
    def _context() -> dict[str, Any]:
        user = g.get("admin_user")
        return {
            "t": t,
            "user": user,
            "can": lambda permission: user is not None and can(user.role, permission),
            "csrf_token": generate_csrf,
            "panel": settings_store.panel(),
            "live_config": live_config,
        }

    # ------------------------------------------------------------------------------------------ access

    @bp.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        form = LoginForm()
        error = None
        status = 200
        if request.method == "POST":
            username = (form.username.data or "").strip()
            password = form.password.data or ""
            try:
                user = None
                if form.validate_on_submit():
                    check = lambda: authenticate(engine, username, password)  # noqa: E731
                    user = limiter.attempt(username, request.remote_addr, check)
            except auth.TooManyAttempts as exc:
                error, status = t("too_many", minutes=exc.minutes), 429
            else:
                if user is not None:
                    auth.log_in(engine, user, app_session_seconds())
                    target = request.args.get("next") or ""
                    if not target.startswith("/admin") or target.startswith("//"):
                        target = url_for("admin.index")
                    return redirect(target)
                error, status = t("bad_login"), 401
        return render_template("admin/login.html", form=form, error=error), status

    def app_session_seconds() -> float:
        return current_app.permanent_session_lifetime.total_seconds()

    @bp.post("/logout")
    def logout() -> Any:
        auth.log_out(engine)  # every session of this user, in every browser
        return redirect(url_for("admin.login"))

    @bp.post("/lang")
    @auth.login_required
    def lang() -> Any:
        form = LangForm()
        if form.validate_on_submit():
            set_lang(engine, g.admin_user.id, form.lang.data)
        referrer = request.referrer or ""
        same_panel = referrer.startswith(request.host_url.rstrip("/") + "/admin")
        return redirect(referrer if same_panel else url_for("admin.index"))

    @bp.get("/")
    @auth.login_required
    def index() -> Any:
        user = g.admin_user
        if can(user.role, "view_calls"):
            return redirect(url_for("admin.calls_page"))
        abort(403)

    # ---------------------------------------------------------------------------------------- settings

    def _effective_with(form: TelephonyForm) -> Settings:
        """The effective settings with the form's (unsaved) values applied where not fixed."""
        base = settings_store.effective()
        mango = base.mango.model_dump()
        mango["api_salt"] = base.mango.api_salt.get_secret_value()
        if not settings_store.is_fixed("mango.api_url") and form.api_url.data:
            mango["api_url"] = form.api_url.data.strip()
        if not settings_store.is_fixed("mango.api_key") and form.api_key.data:
            mango["api_key"] = form.api_key.data.strip()
        if not settings_store.is_fixed("mango.api_salt") and form.api_salt.data:
            mango["api_salt"] = form.api_salt.data.strip()
        if not settings_store.is_fixed("mango.verify_tls"):
            mango["verify_tls"] = bool(form.verify_tls.data)
        return base.model_copy(update={"mango": type(base.mango).model_validate(mango)})

    def _fill(form: TelephonyForm) -> None:
        current = settings_store.effective()
        panel = settings_store.panel()
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

    def _render_settings(
        form: TelephonyForm, result: tuple[bool, str] | None = None, status: int = 200
    ) -> Any:
        return (
            render_template(
                "admin/settings.html",
                form=form,
                fixed=settings_store.fixed,
                salt_set=bool(settings_store.effective().mango.api_salt.get_secret_value()),
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
                raise SettingsError(f"{t('timezone')}: {values['admin.timezone']!r}") from None
            values = {k: v for k, v in values.items() if not settings_store.is_fixed(k)}
            settings_store.save(values)
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
        result = check_connection(candidate)
        return _render_settings(form, result, 200 if result[0] else 502)

    def check_connection(candidate: Settings) -> tuple[bool, str]:
        if not candidate.mango.api_key or not candidate.mango.api_salt.get_secret_value():
            return False, t("conn_incomplete")
        try:
            client = mango_client_factory(candidate)
            try:
                client.check()
            finally:
                client.close()
        except MangoBadSign as exc:
            return False, f"{t('conn_bad_sign')} {exc}"
        except MangoBadKey as exc:
            return False, f"{t('conn_bad_key')} {exc}"
        except MangoError as exc:
            return False, t("conn_failed", reason=str(exc))
        except ValueError as exc:
            return False, t("conn_failed", reason=str(exc))
        return True, t("conn_ok")

    # -------------------------------------------------------------------------------------- connectors

    @bp.get("/connectors")
    @auth.requires("connectors")
    def connectors_page() -> Any:
        from bridge.outbox.queries import counts, list_deliveries
        from bridge.registry import available_connectors

        installed = sorted(available_connectors())
        sections = settings_store.effective().connectors  # saved panel values included
        enabled = {name for name, section in sections.items() if is_enabled(section)}
        totals = counts(engine)
        rows = []
        for name in sorted(set(installed) | set(totals["by_connector"])):
            per = totals["by_connector"].get(name, {"pending": 0, "done": 0, "dead": 0})
            delivered = list_deliveries(engine, status="done", connector=name, limit=1)
            failed = [d for d in list_deliveries(engine, connector=name, limit=20) if d.last_error]
            rows.append(
                {
                    "name": name,
                    "installed": name in installed,
                    "enabled": name in enabled,
                    "counts": per,
                    "last_delivery": delivered[0].delivered_at if delivered else None,
                    "last_error": failed[0].last_error if failed else None,
                    "dead": list_deliveries(engine, status="dead", connector=name, limit=20),
                }
            )
        extra = connectors_health() if connectors_health else {}
        return render_template("admin/connectors.html", rows=rows, extra=extra, form=ActionForm())

    @bp.post("/connectors/retry")
    @auth.requires("connectors")
    def connectors_retry() -> Any:
        from bridge.outbox.queries import retry_deliveries

        ids = [int(v) for v in request.form.getlist("id") if v.isdigit()]
        connector = request.form.get("connector") or None
        n = retry_deliveries(engine, ids=ids or None, connector=connector)
        log.info("admin.retry by=%s connector=%s ids=%s n=%d", g.admin_user.username, connector, ids, n)
        flash(t("retried", n=n), "ok")
        return redirect(url_for("admin.connectors_page"))

    # --------------------------------------------------------------------------------------- employees

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
            crm_maps=_crm_maps(),
            form=ActionForm(),
        )

    def _crm_maps() -> dict[str, dict[str, str]]:
        """Each connector's extension -> CRM user map (connectors that map no users are left out)."""
        maps: dict[str, dict[str, str]] = {}
        for name, connector in sorted((connectors() if connectors else {}).items()):
            try:
                mapped = connector.mapped_users()
            except Exception as exc:  # noqa: BLE001 - one CRM's broken state must not break the page
                log.warning("admin.employees %s map unreadable: %s", name, type(exc).__name__)
                continue
            if mapped or imports_employees(connector):
                maps[name] = mapped
        return maps

    @bp.post("/employees/import-crm")
    @auth.requires("employees")
    def employees_import_crm() -> Any:
        form = ActionForm()
        name = request.form.get("connector") or ""
        connector = (connectors() if connectors else {}).get(name)
        if not form.validate() or connector is None or not imports_employees(connector):
            flash(t("import_failed", reason=name or "?"), "error")
            return redirect(url_for("admin.employees_page"))

        mango_users = mango_users_from(lambda: mango_client_factory(settings_store.effective()))
        try:
            lines = import_crm_employees(connector, mango_users)
        except (MangoError, DeliveryError, ValueError) as exc:
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
            client = mango_client_factory(settings_store.effective())
            try:
                n = import_employees(engine, client)
            finally:
                client.close()
            flash(t("imported", n=n), "ok")
        except (MangoError, ValueError) as exc:
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

    # ---------------------------------------------------------------------------------------- call log

    def _visible_filter(flt: calllog.LogFilter) -> calllog.LogFilter:
        user = g.admin_user
        if can(user.role, "all_calls"):
            return flt
        return flt.with_employee(user.extension or "-none-")

    def _employee_names() -> dict[str, str]:
        with reader(engine).connect() as conn:
            return {
                r.extension: r.name or ""
                for r in conn.execute(select(employees.c.extension, employees.c.name))
            }

    @bp.get("/calls")
    @auth.requires("view_calls")
    def calls_page() -> Any:
        flt = _visible_filter(calllog.LogFilter.from_args(request.args))
        cursor = request.args.get("cursor") or None
        try:
            result = calllog.page(engine, flt, tz(), cursor=cursor)
        except (ValueError, TypeError):
            result = calllog.page(engine, flt, tz(), cursor=None)
        entry_ids = [item["entry_id"] for item in result["items"]]
        recs = _recordings_by_call(entry_ids)
        return render_template(
            "admin/calls.html",
            items=result["items"],
            next_cursor=result["next_cursor"],
            flt=flt,
            args=flt.query_args(),
            recs=recs,
            names=_employee_names(),
            statuses=STATUSES,
            directions=calllog.DIRECTIONS,
            callback_form=CallbackForm(formdata=None),
        )

    def _recordings_by_call(entry_ids: list[str]) -> dict[str, list[str]]:
        from bridge.store.schema import recordings as rec_table

        if not entry_ids:
            return {}
        out: dict[str, list[str]] = {}
        with reader(engine).connect() as conn:
            for row in conn.execute(
                select(rec_table.c.entry_id, rec_table.c.recording_id).where(
                    rec_table.c.entry_id.in_(entry_ids)
                )
            ):
                out.setdefault(row.entry_id, []).append(row.recording_id)
        return out

    @bp.get("/calls.csv")
    @auth.requires("view_calls")
    def calls_csv() -> Any:
        flt = _visible_filter(calllog.LogFilter.from_args(request.args))
        zone = tz()
        body = stream_with_context(calllog.to_csv(calllog.iterate(engine, flt, zone), zone))
        return Response(
            body,
            mimetype="text/csv",
            headers={"Content-Disposition": 'attachment; filename="calls.csv"'},
        )

    @bp.get("/recordings/<path:recording_id>")
    @auth.requires("recordings")
    def recording(recording_id: str) -> Any:
        if not settings_store.panel().recordings:
            abort(403)
        call = recordings.recording_call(engine, recording_id)
        if call is None:
            abort(404)
        if not recordings.may_see_call(g.admin_user, call):
            abort(403)
        try:
            # Mango is asked only when the file is not cached yet; Range requests let the player seek.
            client = lambda: mango_client_factory(settings_store.effective())  # noqa: E731
            return recordings.serve(settings, engine, client, recording_id)
        except recordings.RecordingUnavailable as exc:
            return _error(502, t("recording_failed", reason=str(exc)))

    # ------------------------------------------------------------------------------------------ missed

    @bp.get("/missed")
    @auth.requires("view_calls")
    def missed_page() -> Any:
        days = request.args.get("days", "7")
        days_n = int(days) if days.isdigit() and 0 < int(days) <= 92 else 7
        since = time.time() - days_n * 86400
        all_calls = calllog.load_calls(engine, since)
        ups = follow_ups(all_calls)
        user = g.admin_user
        missed_calls = [c for c in all_calls if c.get("missed")]
        if not can(user.role, "all_calls"):
            missed_calls = [c for c in missed_calls if recordings.may_see_call(user, c)]
        return render_template(
            "admin/missed.html",
            items=missed_calls,
            ups=ups,
            days=days_n,
            names=_employee_names(),
            callback_form=CallbackForm(formdata=None),
        )

    @bp.post("/callback")
    @auth.requires("callback")
    def callback() -> Any:
        form = CallbackForm()
        back = url_for("admin.missed_page") if form.entry_id.data else url_for("admin.calls_page")
        user = g.admin_user
        extension = user.extension
        if user.role == "admin" and form.extension.data:
            extension = form.extension.data.strip()
        wants_json = request.accept_mimetypes.best == "application/json"  # the live popup's Call button
        if not form.validate() or not extension:
            problem = t("no_extension") if not extension else t("callback_failed", reason="number")
            if wants_json:
                return jsonify({"error": problem}), 422
            flash(problem, "error")
            return redirect(back)
        number = form.number.data.strip()
        try:
            command_id = place_call(extension, number)
        except (MangoError, ValueError) as exc:
            if wants_json:
                return jsonify({"error": t("callback_failed", reason=str(exc))}), 422
            flash(t("callback_failed", reason=str(exc)), "error")
            return redirect(back)
        log.info("admin.callback by=%s extension=%s command_id=%s", user.username, extension, command_id)
        sent = t("callback_sent", extension=extension, number=number)
        if wants_json:
            return jsonify({"command_id": command_id, "message": sent})
        flash(sent, "ok")
        return redirect(back)

    # -------------------------------------------------------------------------------------- statistics

    def _stats_rows() -> tuple[list[stats.Row], str, date, date]:
        period = request.args.get("period", "day")
        period = period if period in stats.PERIODS else "day"
        zone = tz()
        today = datetime.now(zone).date()
        flt = calllog.LogFilter.from_args(request.args)
        date_to = flt.date_to or today
        date_from = flt.date_from or (date_to - timedelta(days=30))
        since = datetime.combine(date_from, datetime.min.time(), zone).timestamp()
        until = datetime.combine(date_to + timedelta(days=1), datetime.min.time(), zone).timestamp()
        # Follow-ups may come after the range: read calls up to 7 days later for them.
        window = calllog.load_calls(engine, since, until + 7 * 86400)
        ups = follow_ups(window)
        in_range = [c for c in window if c.get("started_at") is not None and c["started_at"] < until]
        return stats.compute(in_range, ups, period=period, tz=zone), period, date_from, date_to

    @bp.get("/stats")
    @auth.requires("stats")
    def stats_page() -> Any:
        rows, period, date_from, date_to = _stats_rows()
        totals = stats.totals_by_period(rows)
        chart = charts.bar_chart(
            [r.period for r in totals],
            [
                (t("incoming"), [r.incoming for r in totals]),
                (t("outgoing"), [r.outgoing for r in totals]),
                (t("missed"), [r.missed for r in totals]),
            ],
            title=t("chart_title"),
        )
        return render_template(
            "admin/stats.html",
            rows=rows,
            period=period,
            date_from=date_from,
            date_to=date_to,
            chart=Markup(chart),  # noqa: S704 - built by charts.bar_chart, every text escaped there
            names=_employee_names(),
            ALL=stats.ALL,
            fmt_share=stats.fmt_share,
        )

    @bp.get("/stats.csv")
    @auth.requires("stats")
    def stats_csv() -> Any:
        import csv
        import io

        rows, _period, _f, _t = _stats_rows()
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        columns = list(stats.Row("", "").as_dict())
        writer.writerow(columns)
        for row in rows:
            data = row.as_dict()
            writer.writerow([calllog.safe_cell(data[c]) for c in columns])
        return Response(
            buffer.getvalue(),
            mimetype="text/csv",
            headers={"Content-Disposition": 'attachment; filename="statistics.csv"'},
        )

    from admin_module.widget_views import register_widget_routes

    register_widget_routes(bp, engine=engine, settings=settings, t=t)
    from admin_module.connector_views import register_connector_routes

    register_connector_routes(bp, engine=engine, settings=settings, settings_store=settings_store, t=t)
    from admin_module.history_views import register_history_routes

    register_history_routes(
        bp, engine=engine, settings_store=settings_store, mango_client_factory=mango_client_factory, t=t
    )
    from admin_module.quarantine_views import register_quarantine_routes

    register_quarantine_routes(bp, engine=engine, t=t)
    _ = (current_app, json)
    return bp
