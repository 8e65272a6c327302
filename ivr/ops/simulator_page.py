"""The browser call simulator: a phone on the page that runs a call through the real
engine on the draft or any version, in a sandbox that never sends anything real."""

from __future__ import annotations
