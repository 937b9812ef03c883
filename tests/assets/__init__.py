"""Tests of the manifest, fetching and checking models and clips, the int8 build."""
