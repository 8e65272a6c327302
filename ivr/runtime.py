"""Stub: replaced by the flow runtime."""
def init_app(app): pass
