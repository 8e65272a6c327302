"""Where data lives: the database session (`db`) and its tables (`models`) with their
migrations (`migrate`), Redis (`kv`) and its key names (`keys`), and the audit trail
(`audit`)."""
