"""Tests of detectors on real models and photos, the Edge TPU fallback, redaction."""
