"""The jitter buffer family: timeline, delay estimator, decisions, output queue, core and stage."""
