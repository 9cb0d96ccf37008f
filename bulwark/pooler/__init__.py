"""The transaction pooler: what apps meet behind it."""
