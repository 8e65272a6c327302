"""Verifying the caller: one-time codes (`codes`) and the verifier that sends them by
text, email or a call to the phone on file and checks what the caller keys in (`verifier`)."""
