"""Customers and their accounts: CSV import, lookup and display.

`importer` parses and upserts customer rows (no Flask), `accounts` looks accounts
up and describes them, `seed` loads the demo customers, `cli` is `ivr customers`.
"""
