"""HTTP connections that go to the address the service checked, and that a read's
:class:`~shared.storage.transfer_deadlines.TransferDeadline` watches.

A host name checked against the address rules must not be looked up again when connecting: a
second DNS answer could point inside the network (rebinding). These connections connect to the
checked address; the Host header and, over https, TLS still name (and verify) the host. URL
sources use them through :func:`watched_pool`, tenants' S3 clients through :func:`pin_s3_client`
(botocore opens its connections through the pool classes of its HTTP session).
"""

from __future__ import annotations

from typing import Any

import urllib3
from botocore.awsrequest import (
    AWSHTTPConnection,
    AWSHTTPConnectionPool,
    AWSHTTPSConnection,
    AWSHTTPSConnectionPool,
)

from shared.storage.transfer_deadlines import watch_socket


def pinned_connection(base: type[Any], address: str | None) -> type[Any]:
    """``base`` (an urllib3 connection class) connecting to ``address`` (None: its host), its
    sockets watched by the deadline of the read under way."""

    class Pinned(base):  # type: ignore[misc]  # a subclass of a class given at run time
        def _new_conn(self) -> Any:
            if address is not None:
                self._dns_host = address  # urllib3 connects here; host stays for the header and TLS
            sock = super()._new_conn()
            watch_socket(sock)
            return sock

        def getresponse(self, *args: Any, **kwargs: Any) -> Any:
            watch_socket(self.sock)  # a kept-alive connection: watched by the read now under way
            return super().getresponse(*args, **kwargs)

    Pinned.__name__ = f"Pinned{base.__name__}"
    return Pinned


def watched_pool(pool: urllib3.HTTPConnectionPool) -> urllib3.HTTPConnectionPool:
    """``pool`` (already connecting to a checked address), its connections watched."""
    pool.ConnectionCls = pinned_connection(pool.ConnectionCls, None)
    return pool


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
