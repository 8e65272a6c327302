"""The line's hours: the emergency closure ops switch on and off without publishing
(`ivr hours close|open`, the console's switch), read by the `schedule` node."""
