"""Library on disk."""
