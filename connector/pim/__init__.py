"""Everything that talks to the Akeneo PIM."""
