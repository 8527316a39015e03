"""Replication: copying artifacts to other registries as Harbor's push-mode policies do.

plan.py (pure: what a manifest references, where a repository lands), throttle.py (a policy's
`speed`), copy.py (one artifact through the OCI API on both sides), destinations.py (a client
per destination registry), execution.py and task.py (the job handlers: an execution plans,
each task copies one repository and reports REPLICATION), trigger.py (pushes and deletes that
start event-based executions).
"""
