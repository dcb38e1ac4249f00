"""Rendering: pure functions from plain data to strings and bytes (feeds, digest, pages)."""
