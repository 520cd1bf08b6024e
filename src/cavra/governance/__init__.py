"""Governance records (evidence bundles, promotion and rollback executions, endpoint-management exports),
the events built from them, and the service functions that store and deliver them."""
