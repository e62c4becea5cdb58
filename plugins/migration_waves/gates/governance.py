"""Governance checks of a wave's sites: encryption, audit logging, network zones.

Declarations come from the spec (``sites.<name>.encryption / audit_logging / zones``); where the
provider has an API that shows the real setting, the check asks it rather than trusting the
declaration: for ``s3://`` sites, the bucket's default encryption, a bucket policy that denies
plain-HTTP access (``aws:SecureTransport``) and server access logging. Other storage is reported
as declared-but-unverified (a warning), never as verified.

The S3 client comes from a factory: the Airflow layer passes one built from the site's
connection (amazon provider's S3Hook); the CLI and tests pass boto3 clients.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from migration_waves.spec.models import Site, WaveSpec

S3ClientFactory = Callable[[str, Site], Any]
Check = dict[str, Any]


def default_s3_client(site_name: str, site: Site) -> Any:
    """A boto3 S3 client from the environment's credentials and the site's region."""
    import boto3

    return boto3.client("s3", region_name=site.region)


def _check(name: str, passed: bool, message: str, severity: str = "fail") -> Check:
    return {"name": name, "passed": passed, "severity": severity, "message": message}


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__))


def _denies_plain_http(policy_text: str) -> bool:
    """True when some Deny statement matches aws:SecureTransport = false."""
    statements = json.loads(policy_text).get("Statement", [])
    for st in statements if isinstance(statements, list) else [statements]:
        if st.get("Effect") != "Deny":
            continue
        for op, cond in (st.get("Condition") or {}).items():
            if op.lower().startswith("bool") and str(cond.get("aws:SecureTransport", "")).lower() == "false":
                return True
    return False


def check_s3_site(name: str, site: Site, client: Any) -> list[Check]:
    """Encryption at rest, TLS-only policy and access logging of an s3:// site's bucket."""
    bucket = urlsplit(site.storage).netloc
    checks: list[Check] = []
    enc = site.encryption
    if enc and enc.at_rest == "required":
        try:
            rules = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
            algos = [r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules]
            checks.append(
                _check(
                    f"at-rest:site:{name}",
                    True,
                    f"site {name}: bucket {bucket} encrypts by default ({algos})",
                )
            )
        except Exception as exc:  # ClientError, NoCredentialsError, EndpointConnectionError
            code = _error_code(exc)
            why = (
                "has no default encryption; enable SSE-S3 or SSE-KMS on the bucket"
                if code == "ServerSideEncryptionConfigurationNotFoundError"
                else f"could not be checked ({code}: {exc}); fix the connection or the bucket name"
            )
            checks.append(_check(f"at-rest:site:{name}", False, f"site {name}: bucket {bucket} {why}"))
    if enc and enc.in_transit == "required":
        try:
            ok = _denies_plain_http(client.get_bucket_policy(Bucket=bucket)["Policy"])
            why = "has no bucket policy denying aws:SecureTransport=false" if not ok else "denies plain HTTP"
        except Exception as exc:
            code = _error_code(exc)
            ok = False
            why = (
                "has no bucket policy; add one denying aws:SecureTransport=false"
                if code == "NoSuchBucketPolicy"
                else f"policy could not be read ({code}: {exc})"
            )
        checks.append(_check(f"in-transit:site:{name}", ok, f"site {name}: bucket {bucket} {why}"))
    if site.audit_logging:
        try:
            logging = client.get_bucket_logging(Bucket=bucket).get("LoggingEnabled")
            ok = bool(logging)
            why = (
                f"logs access to s3://{logging['TargetBucket']}/{logging.get('TargetPrefix', '')}"
                if logging
                else "has no server access logging; enable it (or CloudTrail data events) on the bucket"
            )
        except Exception as exc:
            ok, why = False, f"logging could not be read ({_error_code(exc)}: {exc})"
        checks.append(_check(f"audit:site:{name}", ok, f"site {name}: bucket {bucket} {why}"))
    return checks


def check_zones(spec: WaveSpec) -> list[Check]:
    """Declared network zones: none overlap, within a site or across sites (hybrid routing)."""
    zones = [(site, zone, net) for site, s in spec.sites.items() for zone, net in s.zones.items()]
    checks: list[Check] = []
    for (s1, z1, n1), (s2, z2, n2) in itertools.combinations(zones, 2):
        if n1.version == n2.version and n1.overlaps(n2):  # type: ignore[arg-type]
            checks.append(
                _check(
                    f"zones:{s1}.{z1}:{s2}.{z2}",
                    False,
                    f"zone {s1}.{z1} ({n1}) overlaps {s2}.{z2} ({n2}); give each zone its own CIDR",
                )
            )
    if zones and not checks:
        checks.append(_check("zones", True, f"{len(zones)} zone(s) declared, no overlaps"))
    return checks


def check_site_governance(spec: WaveSpec, *, s3_client: S3ClientFactory | None = None) -> list[Check]:
    """Declarations of every site, provider-API checks for s3:// sites, and zone overlaps."""
    checks: list[Check] = []
    for name, site in spec.sites.items():
        scheme = urlsplit(site.storage).scheme if "://" in site.storage else "file"
        if site.encryption is None:
            checks.append(
                _check(
                    f"encryption:site:{name}",
                    False,
                    f"site {name}: no encryption declared; add encryption: {{at_rest: required, "
                    "in_transit: required}}",
                    severity="warn",
                )
            )
        elif "optional" in (site.encryption.at_rest, site.encryption.in_transit):
            checks.append(
                _check(
                    f"encryption:site:{name}",
                    False,
                    f"site {name}: encryption is optional ({site.encryption.model_dump()}); waves require "
                    "at_rest and in_transit: required",
                )
            )
        if site.audit_logging is None:
            checks.append(
                _check(
                    f"audit:site:{name}",
                    False,
                    f"site {name}: audit logging not declared; add audit_logging: true",
                    severity="warn",
                )
            )
        elif site.audit_logging is False:
            checks.append(
                _check(f"audit:site:{name}", False, f"site {name}: audit_logging is false; it is required")
            )
        if not site.zones:
            checks.append(
                _check(
                    f"zones:site:{name}",
                    False,
                    f"site {name}: no network zones declared (training, inference, ingestion, admin)",
                    severity="warn",
                )
            )
        if scheme == "s3" and (site.encryption or site.audit_logging):
            factory = s3_client or default_s3_client
            checks.extend(check_s3_site(name, site, factory(name, site)))
        elif site.encryption or site.audit_logging:
            checks.append(
                _check(
                    f"declared:site:{name}",
                    True,
                    f"site {name}: {scheme} storage has no provider API check here; encryption and audit "
                    "logging are declared, not verified",
                    severity="warn",
                )
            )
    checks.extend(check_zones(spec))
    return checks


def network_of(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parse a CIDR strictly (host bits must be zero), as the spec models do."""
    return ipaddress.ip_network(cidr, strict=True)
