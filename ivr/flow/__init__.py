"""Flow definitions as data: model, loader, validation, and the engine that runs them."""
