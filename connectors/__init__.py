"""Connectors: one package per CRM or service, each behind `bridge.connector_api.Connector`.

Connectors are found through the ``callbridge.connectors`` entry point group (see `bridge.registry`), never
imported by the core directly, and import nothing from the core but `bridge.connector_api`.
"""
