"""What happened on each call: timelines written when calls end, and what ops read of them."""
