"""Staff sign-in shared by the agent page and the future ops console (same accounts):
server-side sessions (`sessions`), the half-way sign-in between password and code
(`pending`), TOTP second factor (`totp`) and recovery codes (`recovery`), login
throttling (`throttle`), their Redis key names (`keys`), and the app's wiring of them
(`wiring`: settings, Redis client and clock). Only `wiring` knows Flask."""
