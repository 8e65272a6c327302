"""The line's hours: the emergency closure ops switch on and off without publishing
(`ivr hours close|open`, the console's switch), read by the `schedule` node.

`closures` writes and reads the closures (with their audit), `status` is the engine's
`LineStatus` over a short per-worker cache, `messages` says which prompts a closure
may speak, `cli` is `ivr hours`. The node itself is `ivr.flow.model.schedule` and its
handler `ivr.flow.engine.schedule`.
"""
