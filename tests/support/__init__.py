"""Stand-ins for the services nothing real can run here (Durable extension and host), and fakes."""
