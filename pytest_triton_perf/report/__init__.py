"""Reports rendered from measurement results."""
