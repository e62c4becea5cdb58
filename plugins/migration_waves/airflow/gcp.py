"""Google Cloud credentials for a gcp_urlmap router from the google provider's Airflow connection."""

from __future__ import annotations

from typing import Any


def router_credentials_for(router: Any) -> Any:
    """Credentials of GoogleBaseHook(conn_id) for a gcp_urlmap router; None: application defaults."""
    if router.kind != "gcp_urlmap" or not router.conn_id:
        return None
    from airflow.providers.google.common.hooks.base_google import GoogleBaseHook

    # The connection's scopes apply (default cloud-platform, which covers the Compute API).
    return GoogleBaseHook(gcp_conn_id=router.conn_id).get_credentials()
