"""What runs inside one domain process."""
