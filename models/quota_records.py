"""Quota records: denials and first crossings of a limit, kept for support."""
