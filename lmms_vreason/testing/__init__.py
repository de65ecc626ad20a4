"""Offline stand-ins for what cannot be downloaded: a tiny random-weight model and a fixture benchmark."""
