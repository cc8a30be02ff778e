"""The appliance as a hospital box: systemd, packaging, TLS, auth, limits, logs."""
