"""The call simulator: places calls through the signed webhooks and interprets TwiML."""
