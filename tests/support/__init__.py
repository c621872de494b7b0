"""Test helpers that play the parts of services nothing real can run here."""
