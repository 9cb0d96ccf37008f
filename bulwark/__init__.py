"""bulwark."""
