"""Server launchers: local binary, remote URL. No pytest import."""
