"""ALB and Route 53 routers against a real moto server on loopback (no AWS account can be used here).

moto's server stands in for the AWS APIs (elbv2, ec2, route53); the routers talk to it over HTTP
through real boto3 clients. Each test builds its own VPC/ALB/target groups/listener or hosted zone.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migration_waves.canary.cloud_router import AlbRouter, Route53Router, router_from_spec
from migration_waves.canary.router import RouterError, restore_baseline

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(autouse=True)
def _fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto accepts any keys; these keep boto3 from looking for real ones.
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)


class Counting:
    """A real boto3 client that counts the write calls made through it."""

    def __init__(self, client: Any) -> None:
        self._client, self.writes = client, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name in ("modify_listener", "change_resource_record_sets"):

            def counted(**kwargs: Any) -> Any:
                self.writes += 1
                return attr(**kwargs)

            return counted
        return attr


def _client(service: str, url: str) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=url, region_name="us-east-1")


@pytest.fixture
def alb(moto_url: str) -> dict[str, Any]:
    ec2, elb = _client("ec2", moto_url), _client("elbv2", moto_url)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{az}")["Subnet"][
            "SubnetId"
        ]
        for i, az in ((1, "a"), (2, "b"))
    ]
    name = f"lb-{time.time_ns() % 10**9}"
    lb = elb.create_load_balancer(Name=name, Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    tgs = [
        elb.create_target_group(Name=f"{name}-{side}", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][
            0
        ]["TargetGroupArn"]
        for side in ("base", "cand", "other")
    ]
    listener = elb.create_listener(
        LoadBalancerArn=lb,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tgs[0]}],
    )["Listeners"][0]["ListenerArn"]
    return {"client": elb, "listener": listener, "baseline": tgs[0], "candidate": tgs[1], "other": tgs[2]}


def _alb_weights(alb: dict[str, Any]) -> dict[str, int]:
    action = alb["client"].describe_listeners(ListenerArns=[alb["listener"]])["Listeners"][0][
        "DefaultActions"
    ][0]
    return {g["TargetGroupArn"]: g["Weight"] for g in action["ForwardConfig"]["TargetGroups"]}


def test_alb_steps_read_back_and_writes_only_on_change(alb: dict[str, Any]) -> None:
    client = Counting(alb["client"])
    router = AlbRouter(alb["listener"], alb["baseline"], alb["candidate"], client=client)
    assert router.get_candidate_weight() == 0  # a plain forward to the baseline group
    assert router.set_candidate_weight(5) == 5
    assert _alb_weights(alb) == {alb["baseline"]: 95, alb["candidate"]: 5}
    assert router.set_candidate_weight(5) == 5 and client.writes == 1  # idempotent
    assert router.set_candidate_weight(100) == 100  # explicit promotion: the only way baseline hits 0
    assert _alb_weights(alb) == {alb["baseline"]: 0, alb["candidate"]: 100}
    for bad in (101, -1, True, 2.5):
        with pytest.raises(ValueError, match=r"integer 0\.\.100"):
            router.set_candidate_weight(bad)  # type: ignore[arg-type]
    assert client.writes == 2 and router.get_candidate_weight() == 100


def test_alb_rollback_is_idempotent(alb: dict[str, Any]) -> None:
    client = Counting(alb["client"])
    router = AlbRouter(alb["listener"], alb["baseline"], alb["candidate"], client=client)
    router.set_candidate_weight(25)
    first = restore_baseline(router)
    assert first.passed and first.changed and (first.before_pct, first.after_pct) == (25, 0)
    assert _alb_weights(alb) == {alb["baseline"]: 100, alb["candidate"]: 0}
    writes = client.writes
    again = restore_baseline(router)
    assert again.passed and not again.changed and client.writes == writes  # nothing moved, nothing written


def test_alb_preconditions_refuse_before_writing(alb: dict[str, Any]) -> None:
    elb = alb["client"]
    elb.modify_listener(
        ListenerArn=alb["listener"],
        DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": [
            {"TargetGroupArn": alb["baseline"], "Weight": 90},
            {"TargetGroupArn": alb["other"], "Weight": 10}]}}],
    )  # fmt: skip
    client = Counting(elb)
    router = AlbRouter(alb["listener"], alb["baseline"], alb["candidate"], client=client)
    with pytest.raises(RouterError, match="also forwards to"):
        router.set_candidate_weight(5)
    assert client.writes == 0 and _alb_weights(alb)[alb["other"]] == 10
    with pytest.raises(ValueError, match="the same"):
        AlbRouter(alb["listener"], alb["baseline"], alb["baseline"], client=elb)


@pytest.fixture
def zone(moto_url: str) -> dict[str, Any]:
    r53 = _client("route53", moto_url)
    zone_id = r53.create_hosted_zone(Name="example.com", CallerReference=str(time.time_ns()))["HostedZone"][
        "Id"
    ]
    r53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [
            {"Action": "CREATE", "ResourceRecordSet": {
                "Name": "api.example.com", "Type": "CNAME", "SetIdentifier": sid, "Weight": weight, "TTL": 60,
                "ResourceRecords": [{"Value": value}]}}
            for sid, weight, value in (("onprem", 100, "dc.example.com"), ("cloud", 0, "lb.example.com"))
        ]},
    )  # fmt: skip
    return {"client": r53, "zone": zone_id}


def _records(zone: dict[str, Any]) -> dict[str, dict[str, Any]]:
    page = zone["client"].list_resource_record_sets(HostedZoneId=zone["zone"])
    return {r["SetIdentifier"]: r for r in page["ResourceRecordSets"] if "SetIdentifier" in r}


def test_route53_weights_move_and_keep_the_records(zone: dict[str, Any]) -> None:
    client = Counting(zone["client"])
    router = Route53Router(zone["zone"], "api.example.com", "onprem", "cloud", client=client)
    assert router.get_candidate_weight() == 0
    assert router.set_candidate_weight(25) == 25
    recs = _records(zone)
    assert (recs["onprem"]["Weight"], recs["cloud"]["Weight"]) == (75, 25)
    assert recs["cloud"]["ResourceRecords"] == [{"Value": "lb.example.com"}] and recs["cloud"]["TTL"] == 60
    assert router.set_candidate_weight(25) == 25 and client.writes == 1
    rolled = restore_baseline(router)
    assert rolled.changed and rolled.after_pct == 0 and client.writes == 2
    assert restore_baseline(router).changed is False and client.writes == 2
    assert (_records(zone)["onprem"]["Weight"], _records(zone)["cloud"]["Weight"]) == (100, 0)


def test_route53_refuses_missing_records_and_an_undefined_split(zone: dict[str, Any]) -> None:
    r53 = zone["client"]
    with pytest.raises(RouterError, match="missing"):
        Route53Router(zone["zone"], "api.example.com", "onprem", "gcp", client=r53).set_candidate_weight(5)
    recs = _records(zone)
    r53.change_resource_record_sets(
        HostedZoneId=zone["zone"],
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {**recs["onprem"], "Weight": 0}}]},
    )
    router = Route53Router(zone["zone"], "api.example.com", "onprem", "cloud", client=r53)
    with pytest.raises(RouterError, match="no defined share"):
        router.get_candidate_weight()  # both 0: Route 53 would split evenly; never read as a weight
    assert router.set_candidate_weight(0) == 0  # the rollback puts the stable side back
    assert _records(zone)["onprem"]["Weight"] == 100


def test_spec_builds_routers_with_plain_boto3_and_through_the_provider_hook(
    alb: dict[str, Any], moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migration_waves.spec.models import RouterSpec

    fields = {"kind": "aws_alb", "admin": "http://alb.example.com", "region": "us-east-1",
              "listener_arn": alb["listener"], "baseline_target_group_arn": alb["baseline"],
              "candidate_target_group_arn": alb["candidate"]}  # fmt: skip
    plain = router_from_spec(RouterSpec.model_validate({**fields, "endpoint_url": moto_url}))
    assert plain.set_candidate_weight(50) == 50

    from migration_waves.airflow.aws import router_client_for

    extra = {"endpoint_url": moto_url, "region_name": "us-east-1"}
    conn = {"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_CANARY_AWS", json.dumps(conn))
    spec = RouterSpec.model_validate({**fields, "conn_id": "canary_aws"})
    hooked = router_from_spec(spec, client=router_client_for(spec))
    assert hooked.get_candidate_weight() == 50 and restore_baseline(hooked).after_pct == 0
    with pytest.raises(ValueError, match="needs listener_arn"):
        RouterSpec.model_validate({"kind": "aws_alb", "admin": "http://alb.example.com"})
