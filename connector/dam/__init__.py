"""DAM side: the `DamSource` port and its adapters (generic REST, hot folder)."""
