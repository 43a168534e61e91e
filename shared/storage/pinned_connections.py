"""HTTP connections that go to the address the service checked.

A host name checked against the address rules must not be looked up again when connecting: a
second DNS answer could point inside the network (rebinding). These connections connect to the
checked address; the Host header and, over https, TLS still name (and verify) the host.
Tenants' S3 clients use them through :func:`pin_s3_client` (botocore opens its connections
through the pool classes of its HTTP session).
"""

from __future__ import annotations

from typing import Any

from botocore.awsrequest import (
    AWSHTTPConnection,
    AWSHTTPConnectionPool,
    AWSHTTPSConnection,
    AWSHTTPSConnectionPool,
)


def pinned_connection(base: type[Any], address: str) -> type[Any]:
    """``base`` (an urllib3 connection class) connecting to ``address``."""

    class Pinned(base):  # type: ignore[misc]  # a subclass of a class given at run time
        def _new_conn(self) -> Any:
            self._dns_host = address  # urllib3 connects here; host stays for the header and TLS
            return super()._new_conn()

    Pinned.__name__ = f"Pinned{base.__name__}"
    return Pinned


def pin_s3_client(client: Any, address: str) -> None:
    """Every connection ``client`` opens goes to ``address``, whatever its endpoint's name resolves to."""
    pools = {
        "http": type(
            "PinnedPool", (AWSHTTPConnectionPool,), {"ConnectionCls": pinned_connection(AWSHTTPConnection, address)}
        ),
        "https": type(
            "PinnedTLSPool",
            (AWSHTTPSConnectionPool,),
            {"ConnectionCls": pinned_connection(AWSHTTPSConnection, address)},
        ),
    }
    session = client._endpoint.http_session
    session._pool_classes_by_scheme = pools
    session._manager.pool_classes_by_scheme = pools
