"""Stand-ins shared by the integration and worker tests, for what cannot run here."""
