"""Voicemail: the messages callers leave at a `voicemail` node.

`store` writes them from Twilio's two webhooks (the `<Record>` action and the
recording status callback, in either order, each maybe repeated); `queries` is what
the agent page and the CLI read and the "mark handled" action; `retention` deletes them
(at Twilio first) after IVR_VOICEMAIL_DAYS or a customer's erasure; `audio` streams a
recording from Twilio to a signed-in agent. Twilio holds the audio; we hold the facts.
"""
