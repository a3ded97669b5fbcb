"""The analyzer chain: backends tried in order, each batch-capable, and the share adjustment."""
