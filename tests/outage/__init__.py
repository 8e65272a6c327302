"""Stand-ins for storage outages: a TCP proxy that passes, stalls or refuses, and a
private redis-server that can be paused, stopped and started."""
