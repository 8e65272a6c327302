"""`make bench`: the service against a bare Flask app and a minimal stateful sample.

Each module has one job: `twilio_double` (Twilio's REST API on a local port),
`baselines` (the two comparison apps), `launcher` (gunicorn as the Procfile runs it,
and cleaning up), `seed` (a scratch database with generated customers), `journeys`
(complete signed call journeys), `driver` (the load rounds), `counting` (Redis round
trips and SQL statements per webhook, in process), `report` (the table and the JSON)
and `run` (the command line). docs/capacity.md says how to read the result.
"""
