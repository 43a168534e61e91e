"""Tenants: API keys, quotas and rate limits, the storage quota, stored connections."""
