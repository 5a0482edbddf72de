"""HTTP plumbing the API and the console share: one JSON shape for every refusal, and the limits on request bodies."""
