"""WSGI entry point for gunicorn: production unless IVR_ENV says otherwise."""

from ivr.app import create_app
from ivr.config import PRODUCTION

app = create_app(default_env=PRODUCTION)
