"""A local Redis Cluster for the tests and for developers (see local.py)."""
