"""The Twilio voice webhooks."""
