"""Speech-to-text eval: the local STT on recorded speech and spoken digit strings."""
