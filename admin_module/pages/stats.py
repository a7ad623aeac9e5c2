"""Call statistics per employee and period, their chart and CSV (`/admin/stats`, `/admin/stats.csv`)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from flask import Blueprint, g, render_template, request
from markupsafe import Markup

from admin_module import auth, calllog, charts, scope, stats
from admin_module.csv_export import csv_lines, csv_response, requested_separator
from admin_module.missed import follow_ups
from admin_module.pages.context import PageContext


def register(bp: Blueprint, ctx: PageContext) -> None:
    """Add the statistics page and its CSV export to the admin blueprint."""
    t = ctx.t

    @bp.get("/stats")
    @auth.requires("stats")
    def stats_page() -> Any:
        rows, period, date_from, date_to = stats_rows(ctx)
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
            names=ctx.employee_names(),
            ALL=stats.ALL,
            fmt_share=stats.fmt_share,
        )

    @bp.get("/stats.csv")
    @auth.requires("stats")
    def stats_csv() -> Any:
        rows, _period, _f, _t = stats_rows(ctx)
        columns = list(stats.Row("", "").as_dict())
        cells = ([row.as_dict()[c] for c in columns] for row in rows)
        return csv_response(csv_lines(columns, cells, requested_separator()), "statistics.csv")


def stats_rows(ctx: PageContext) -> tuple[list[stats.Row], str, date, date]:
    """The statistics for the request's period and date range: (rows, period, first day, last day)."""
    period = request.args.get("period", "day")
    period = period if period in stats.PERIODS else "day"
    zone = ctx.tz()
    today = datetime.now(zone).date()
    flt = calllog.LogFilter.from_args(request.args)
    date_to = flt.date_to or today
    date_from = flt.date_from or (date_to - timedelta(days=30))
    since = datetime.combine(date_from, datetime.min.time(), zone).timestamp()
    until = datetime.combine(date_to + timedelta(days=1), datetime.min.time(), zone).timestamp()
    # Follow-ups may come after the range: read calls up to 7 days later for them.
    window = calllog.load_calls(ctx.engine, since, until + 7 * 86400)
    ups = follow_ups(window)
    in_range = [c for c in window if c.get("started_at") is not None and c["started_at"] < until]
    visible = scope.for_request(g.admin_user)  # a team leader: their groups' calls only
    if visible is not None:
        in_range = [c for c in in_range if scope.may_see_call(visible, c)]
    return stats.compute(in_range, ups, period=period, tz=zone), period, date_from, date_to
