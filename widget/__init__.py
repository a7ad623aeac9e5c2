"""The embeddable "we'll call you back in 30 seconds" widget: its script, its HTTP API and its scheduler.

Wiring: `widget.addon` registers the widget with the core (entry point `callbridge.addons`): its tables,
its blueprint (`widget.blueprint.make_widget_blueprint`, with its `/widget` prefix), its scheduler
(`widget.scheduler.make_widget_scheduler`, a background thread) and its CLI group. Sites are added with
`callbridge widget add-site`. See docs/widget.md.

This package module imports nothing, so loading the add-on's registration stays cheap.
"""
