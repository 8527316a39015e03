"""Delivery: claim due deliveries, render, send, record the outcome, reschedule with backoff."""
