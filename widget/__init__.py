"""The embeddable "we'll call you back in 30 seconds" widget: its script, its HTTP API and its scheduler.

Wiring (done by the daemon): `widget.blueprint.make_widget_blueprint(settings, engine, connectors,
mango_client_factory)` is registered on the web app (it carries its `/widget` prefix), and
`widget.scheduler.make_widget_scheduler(...)` with the same arguments runs as a background thread
(`run_forever(stop)`). Sites are added with `callbridge widget add-site`. See docs/widget.md.

This package module imports nothing, so `bridge.store.schema` can import `widget.tables` without a cycle.
"""
