"""Model definitions of the built-in zoo (MegEngine modules)."""
