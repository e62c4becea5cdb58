"""S3 clients for governance checks: the site's Airflow connection through the amazon provider."""

from __future__ import annotations

from typing import Any

from migration_waves.spec.models import Site


def s3_client_for(site_name: str, site: Site) -> Any:
    """boto3 S3 client of a site: S3Hook(conn_id) when the site names a connection, else the environment."""
    if site.conn_id:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=site.conn_id, region_name=site.region).get_conn()
    from migration_waves.gates.governance import default_s3_client

    return default_s3_client(site_name, site)


def router_client_for(router: Any) -> Any:
    """boto3 client of an aws_alb or route53 router from AwsBaseHook(conn_id); None: plain boto3."""
    if router.kind not in ("aws_alb", "route53") or not router.conn_id:
        return None
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    service = {"aws_alb": "elbv2", "route53": "route53"}[router.kind]
    return AwsBaseHook(aws_conn_id=router.conn_id, client_type=service, region_name=router.region).get_conn()
