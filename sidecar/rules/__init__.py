"""Policies: the rules file, Harbor's validation, and which policies an event matches."""
