"""The tenant's stored S3-compatible connections (``/v1/connections``), which sources by
reference and destinations name; :class:`client.api.Client` has these methods."""

from __future__ import annotations

from client.transport import Transport, path_segment
from client.types import Connection


class ConnectionMethods:
    _http: Transport

    def create_connection(
        self,
        name: str,
        endpoint_url: str,
        bucket: str,
        access_key_id: str,
        secret_access_key: str,
        region: str | None = None,
    ) -> Connection:
        body = {
            "name": name,
            "endpoint_url": endpoint_url,
            "bucket": bucket,
            "access_key_id": access_key_id,
            "secret_access_key": secret_access_key,
        }
        if region is not None:
            body["region"] = region
        # Not retried: a repeat after a lost answer would meet the first one (409).
        return Connection.from_json(self._http.json("POST", "/v1/connections", idempotent=False, json_body=body))

    def connections(self) -> list[Connection]:
        data = self._http.json("GET", "/v1/connections", idempotent=True)
        return [Connection.from_json(entry) for entry in data["connections"]]

    def delete_connection(self, name: str) -> None:
        self._http.request("DELETE", f"/v1/connections/{path_segment(name, 'connection name')}", idempotent=True)
