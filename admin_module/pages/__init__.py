"""The admin panel's page groups, one module each; `make_admin_blueprint` calls each one's `register`.

Every module in `PAGES` exposes `register(bp, ctx)`, where `ctx` is the `PageContext` the pages share
(settings, engine, settings store, translator, time zone, click-to-call, Mango client factory, running
connectors). The live popups, callback requests, call detail, widget sites, connector settings, history
import and quarantine pages register from `admin_module/live.py`, `callbacks.py`, `call_detail.py`,
`widget_views.py`, `connector_views.py`, `history_views.py` and `quarantine_views.py`.
"""

from admin_module.pages import auth, calls, connectors, employees, missed, settings, stats
from admin_module.pages.context import ClientFactory, Originate, PageContext, Translate, error_page

PAGES = (auth, settings, connectors, employees, calls, missed, stats)
"""The page groups in the order they register."""

__all__ = ["PAGES", "ClientFactory", "Originate", "PageContext", "Translate", "error_page"]
