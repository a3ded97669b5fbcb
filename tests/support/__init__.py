"""Helpers the tests share: servers, seeded stores, a private PostgreSQL, tiny models."""
