"""edge: builds the home page per visitor; serves a JSON API and an HTML page."""
