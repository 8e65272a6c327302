"""The two apps the service is measured against, each served by gunicorn like the service.

`bare`: Flask answering every POST with the same fixed TwiML: the cost of gunicorn,
Flask and HTTP alone, the ceiling nothing stateful reaches.

`sample`: the least a stateful Twilio webhook can do, as Twilio's own samples would
with a signature check added: the `X-Twilio-Signature` checked by one
`RequestValidator` per process over every POSTed field, one Redis GET and one SET of a
small per-call state, and a `VoiceResponse` with a `Gather` built by the `twilio`
library. The issue's target is the service at 1.0 times this sample or better.

Both read their settings from the environment the launcher gives them:
`BENCH_AUTH_TOKEN`, `BENCH_PUBLIC_URL`, `BENCH_KEY_PREFIX` (the run's Redis key prefix), and
`BENCH_REDIS_URL` (absent: an in-process
fakeredis, as the service's embedded default; one worker then).
"""

from __future__ import annotations

import json
import os
from typing import Any

from flask import Flask, Response, abort, request
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Gather, VoiceResponse

FIXED_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Gather action="/voice/input?s=1" '
    'input="dtmf" method="POST" numDigits="1" timeout="5"><Say>For English, press 1.</Say>'
    "</Gather><Redirect>/voice/input?s=1</Redirect></Response>"
)
STATE_TTL = 4 * 3600  # seconds, as the service's call state

bare = Flask("bench_bare")


@bare.post("/<path:path>")
def bare_answer(path: str) -> Response:
    """The same TwiML for every webhook."""
    return Response(FIXED_TWIML, mimetype="text/xml")


def _redis() -> Any:
    url = os.environ.get("BENCH_REDIS_URL")
    if url:
        from ivr.storage import kv  # redis.Redis, or a cluster client for a cluster URL

        return kv.connect(url, 1.5)
    import fakeredis

    return fakeredis.FakeRedis()


sample = Flask("bench_sample")
_validator = RequestValidator(os.environ.get("BENCH_AUTH_TOKEN", ""))
_public_url = os.environ.get("BENCH_PUBLIC_URL", "").rstrip("/")
_store = _redis()
_prefix = os.environ.get("BENCH_KEY_PREFIX") or "bench"  # the run's, deleted after it


@sample.post("/<path:path>")
def sample_answer(path: str) -> Response:
    """Check the signature, read and write the call's state, answer a Gather."""
    url = _public_url + request.full_path.rstrip("?")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not _validator.validate(url, request.form, signature):
        abort(403)
    call_sid = request.form.get("CallSid", "")
    key = f"{_prefix}:sample:{{call:{call_sid}}}:state"
    raw = _store.get(key)
    state: dict[str, Any] = json.loads(raw) if raw else {"step": 0, "node": "welcome"}
    state["step"] += 1
    state["digits"] = bool(request.form.get("Digits"))
    _store.set(key, json.dumps(state), ex=STATE_TTL)
    response = VoiceResponse()
    gather = Gather(action=f"/voice/input?s={state['step']}", num_digits=1, timeout=5)
    gather.say("For English, press 1.")
    response.append(gather)
    response.redirect(f"/voice/input?s={state['step']}")
    return Response(str(response), mimetype="text/xml")
