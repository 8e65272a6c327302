"""Voicemail webhooks: the `<Record>` action (the caller finished their message) and
Twilio's recording status callback (the recording is stored at Twilio).

(Issue 15 groundwork; the voicemail work stores and lists the messages.)
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from ivr.flow.engine import Recorded
from ivr.voice import webhook
from ivr.voice.signature import require_twilio_signature
from ivr.voice.views import run_step

bp = Blueprint("voicemail", __name__, url_prefix="/voice/voicemail")
bp.before_request(require_twilio_signature)


@bp.post("/recorded")
def recorded() -> Response:
    """The `<Record>` action: the message ended (finish key, silence or maximum length)."""
    call = webhook.parse(request.form)
    step = webhook.step(request.args)
    seconds = webhook.ascii_int(request.form.get("RecordingDuration"), 0)
    return run_step(call.call_sid, f"recorded:{step}", step, lambda: Recorded(seconds, step))


@bp.post("/status")
def recording_status() -> Response:
    """The recording status callback: the message is stored at Twilio."""
    return Response("", status=204)
