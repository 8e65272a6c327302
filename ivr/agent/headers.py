"""The response headers of the staff pages (agent page, ops console): what the browser may
do with pages that show customer facts and flow definitions.

The page shows masked customer details to signed-in agents, so every response says
what the browser may do with it: only our own scripts, styles and forms (a strict
Content-Security-Policy, which is why the page has no inline script), never inside
another site's frame, no guessing of content types, no full referrer to other sites,
and no copy on disk caches (static files excepted: they hold nothing about a call).
"""

from __future__ import annotations

from flask import Response, request

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def secure_headers(response: Response) -> Response:
    """Add the security headers to a response of a staff blueprint."""
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if not (request.endpoint or "").endswith(".static"):
        response.headers["Cache-Control"] = "no-store"  # customer facts stay off disk caches
    return response
