"""history: what a visitor watched recently; an optional row on the home page."""
