"""The admin panel: a Flask blueprint at `/admin` (settings, connectors, employees, call log with
recordings, missed calls with callbacks, statistics), server-rendered, usable standalone or in an iframe."""
