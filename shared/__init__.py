"""Tributary: Event Hubs Capture files into bronze, silver and gold Delta tables."""
