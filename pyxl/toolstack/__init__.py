"""What libxl does: create/destroy orchestration, device wiring in xenstore,
the daemon's control server and the CLI's client (handshake, autostart,
errors).  Modules here are imported lazily by the CLI; keep them light."""
