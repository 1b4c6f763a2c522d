"""The simulated paravirtualised Linux guest."""
