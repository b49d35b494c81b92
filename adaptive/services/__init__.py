"""Domain actions. Every entry point (API, dashboard, admin, commands, tasks) calls these."""
