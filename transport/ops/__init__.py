"""Running Transport as a service: systemd readiness, logging, reload, the unit file."""
