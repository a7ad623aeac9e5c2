"""Call history imported from Mango's `stats/request` for a chosen period.

`periods` checks the dates and splits the period into requests Mango accepts, `calls` turns a report's
legs into call rows shaped like the live tracker's, `jobs` keeps the import jobs and their progress,
`importer` runs one job, `runner` runs queued jobs in the daemon, `cli` is `callbridge import-history`.
The job table, `history_imports`, is in `bridge.store.schema`.
"""
