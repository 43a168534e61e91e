"""Which tenant a request acts for.

Every request belongs to the single tenant ``local`` for now; API-key authentication will
resolve the tenant here, and every route already scopes its jobs and uploads by it.
"""

from __future__ import annotations

LOCAL_TENANT = "local"


def current_tenant() -> str:
    return LOCAL_TENANT
