"""Customers and their accounts: CSV import, lookup and display."""
