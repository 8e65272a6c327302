"""Device cookies (OWASP "Slow down online guessing attacks with device cookies"): a
browser that signed in as a user gets a signed cookie naming that user and a random
device id, and its later sign-ins as that user are throttled per device, not per
username — so an attacker guessing a named agent's password slows every other browser,
never the agent's own.

The cookie is signed with IVR_SECRET_KEY (itsdangerous, its own salt), HttpOnly,
SameSite=Strict, Secure in production, and lasts `MAX_AGE`; it proves nothing about
the person (the password and code are still asked), it only says "this browser got in
as this user before".
"""

from __future__ import annotations

import secrets

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "ivr_staff_device"
MAX_AGE = 90 * 24 * 3600  # seconds
SALT = "ivr.staff.device"


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=SALT)


def issue(secret_key: str, username: str) -> str:
    """A new device cookie value for a browser that just signed in as `username`."""
    return _serializer(secret_key).dumps({"u": username, "d": secrets.token_urlsafe(16)})


def device_of(secret_key: str, cookie: str | None, username: str) -> str | None:
    """The device id this browser's cookie names for `username`, if it is genuine, recent
    and for that user; None otherwise."""
    if not cookie:
        return None
    try:
        value = _serializer(secret_key).loads(cookie, max_age=MAX_AGE)
    except BadSignature:  # includes an expired signature
        return None
    if not isinstance(value, dict) or value.get("u") != username:
        return None
    device = value.get("d")
    return device if isinstance(device, str) and device else None
