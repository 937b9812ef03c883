"""Models and clips: the manifest, fetching and checking them, and making the int8 model."""
