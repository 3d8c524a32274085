"""Deadlines, retries, circuit breakers, fallbacks and the degradation ladder."""
