"""Persistence: peewee models behind one DatabaseProxy (SQLite by default, PostgreSQL by URL)."""
