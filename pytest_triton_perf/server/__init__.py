"""Server launchers: local binary, Docker container, remote URL. No pytest import."""
