"""Spark jobs for the large-file route, compiled from the same contracts (a later issue)."""
