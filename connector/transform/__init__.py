"""DAM record → Akeneo asset: selection, mapping, value conversion, quarantine."""
