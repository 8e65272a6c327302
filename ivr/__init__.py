"""ivr: an IVR voice-call service for a support line on Twilio."""
