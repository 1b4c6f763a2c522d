"""What Xen and its daemons do: domains, xenstore, event channels, grants, consoles."""
