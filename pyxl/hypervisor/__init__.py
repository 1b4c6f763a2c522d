"""What Xen and its dom0 daemons do: the domain table, memory accounting, the
host, and (hv-services) xenstore, event channels, grants and console rings."""
