"""A running call: its state in Redis (`store`), the loaded call tree it runs on
(`runtime`), and the outbound calls the service places for it (`outbound`)."""
