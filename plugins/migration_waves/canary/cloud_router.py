"""Cloud traffic routers behind the Router protocol: ALB weighted target groups and Route 53 records.

Both take a ready boto3 client (the Airflow layer makes one from the amazon provider's hooks when the
spec names a conn_id) or build a plain one (region, endpoint_url). Every write is idempotent and
guarded:
- preconditions are checked before a write (the listener forwards only to the two configured target
  groups; both weighted records exist), so a write never drops traffic that goes somewhere else;
- weights are always (100 - pct, pct): the stable (baseline) side never reaches 0 except by an
  explicit request for 100%, both sides are never 0 at once (Route 53 would then split evenly),
  and a write that would break either rule is refused;
- an unchanged weight is not written again (a rollback with nothing moved changes nothing);
- every write is read back and compared.
"""

from __future__ import annotations

from typing import Any

from migration_waves.canary.router import RouterError


def _client(service: str, *, region: str | None, endpoint_url: str | None) -> Any:
    import boto3

    return boto3.client(service, region_name=region, endpoint_url=endpoint_url)


def guard_weights(pct: Any, where: str) -> tuple[int, int]:
    """(baseline, candidate) weights of a candidate percentage; refuses anything that is not 0..100."""
    if isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 100:
        raise ValueError(f"{where}: candidate weight must be an integer 0..100, got {pct!r}")
    return 100 - pct, pct


def _percent(baseline: int, candidate: int, where: str) -> int:
    if baseline < 0 or candidate < 0 or baseline + candidate == 0:
        raise RouterError(
            f"{where}: weights baseline {baseline}, candidate {candidate} send no defined share; "
            "set them by hand (e.g. baseline 100, candidate 0) before the canary"
        )
    return round(100 * candidate / (baseline + candidate))


class AlbRouter:
    """Weighted forward action of an ALB listener's default rule: baseline vs candidate target group."""

    def __init__(
        self,
        listener_arn: str,
        baseline_target_group_arn: str,
        candidate_target_group_arn: str,
        *,
        client: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        if baseline_target_group_arn == candidate_target_group_arn:
            raise ValueError(
                f"ALB listener {listener_arn}: baseline and candidate target groups are the same "
                f"({baseline_target_group_arn}); name two different target groups"
            )
        self.listener_arn = listener_arn
        self.baseline_tg, self.candidate_tg = baseline_target_group_arn, candidate_target_group_arn
        self.client = client or _client("elbv2", region=region, endpoint_url=endpoint_url)

    def __repr__(self) -> str:
        return f"AlbRouter({self.listener_arn})"

    def _action(self) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            listeners = self.client.describe_listeners(ListenerArns=[self.listener_arn])["Listeners"]
        except (BotoCoreError, ClientError) as exc:
            raise RouterError(f"{self!r}: cannot read the listener: {exc}") from exc
        actions = listeners[0].get("DefaultActions") or [] if listeners else []
        forwards = [a for a in actions if a.get("Type") == "forward"]
        if len(forwards) != 1 or len(actions) != 1:
            raise RouterError(
                f"{self!r}: default rule must be one forward action, found {[a.get('Type') for a in actions]}"
            )
        return forwards[0]

    def weights(self) -> dict[str, int]:
        """Current target-group weights {baseline, candidate}; refuses a listener with other groups."""
        action = self._action()
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups")
        if not groups:  # a plain forward to one group
            groups = [{"TargetGroupArn": action.get("TargetGroupArn"), "Weight": 1}]
        weights = {g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in groups}
        foreign = sorted(set(weights) - {self.baseline_tg, self.candidate_tg})
        if foreign:
            raise RouterError(
                f"{self!r}: the listener also forwards to {foreign}; a canary write would drop them. "
                "Route only the baseline and candidate target groups through this listener"
            )
        return {"baseline": weights.get(self.baseline_tg, 0), "candidate": weights.get(self.candidate_tg, 0)}

    def get_candidate_weight(self) -> int:
        w = self.weights()
        return _percent(w["baseline"], w["candidate"], repr(self))

    def set_candidate_weight(self, pct: int) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        baseline, candidate = guard_weights(pct, repr(self))
        action = self._action()
        if self.weights() == {"baseline": baseline, "candidate": candidate}:
            return pct  # idempotent: nothing to write
        forward: dict[str, Any] = {
            "TargetGroups": [
                {"TargetGroupArn": self.baseline_tg, "Weight": baseline},
                {"TargetGroupArn": self.candidate_tg, "Weight": candidate},
            ]
        }
        sticky = (action.get("ForwardConfig") or {}).get("TargetGroupStickinessConfig")
        if sticky:
            forward["TargetGroupStickinessConfig"] = sticky
        try:
            self.client.modify_listener(
                ListenerArn=self.listener_arn, DefaultActions=[{"Type": "forward", "ForwardConfig": forward}]
            )
        except (BotoCoreError, ClientError) as exc:
            raise RouterError(f"{self!r}: could not set candidate {pct}%: {exc}") from exc
        confirmed = self.get_candidate_weight()
        if confirmed != pct:
            raise RouterError(f"{self!r}: asked for candidate {pct}%, listener reports {confirmed}%")
        return confirmed


class Route53Router:
    """Two weighted records of one name (SetIdentifier baseline / candidate) in a hosted zone."""

    def __init__(
        self,
        hosted_zone_id: str,
        record_name: str,
        baseline_set_identifier: str,
        candidate_set_identifier: str,
        *,
        record_type: str = "CNAME",
        client: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        if baseline_set_identifier == candidate_set_identifier:
            raise ValueError(
                f"Route 53 record {record_name}: baseline and candidate set identifiers are both "
                f"{baseline_set_identifier!r}; name two different ones"
            )
        self.zone, self.name, self.type = hosted_zone_id, record_name.rstrip(".") + ".", record_type
        self.ids = {"baseline": baseline_set_identifier, "candidate": candidate_set_identifier}
        self.client = client or _client("route53", region=region, endpoint_url=endpoint_url)

    def __repr__(self) -> str:
        return f"Route53Router({self.zone}/{self.name} {self.type})"

    def records(self) -> dict[str, dict[str, Any]]:
        """The two weighted record sets {baseline, candidate}; both must exist."""
        from botocore.exceptions import BotoCoreError, ClientError

        found: dict[str, dict[str, Any]] = {}
        kwargs: dict[str, Any] = {
            "HostedZoneId": self.zone, "StartRecordName": self.name, "StartRecordType": self.type,
        }  # fmt: skip
        try:
            while True:
                page = self.client.list_resource_record_sets(**kwargs)
                for rs in page["ResourceRecordSets"]:
                    if rs["Name"] != self.name or rs["Type"] != self.type:
                        break
                    for side, sid in self.ids.items():
                        if rs.get("SetIdentifier") == sid:
                            found[side] = rs
                else:
                    if page.get("IsTruncated"):
                        kwargs.update(
                            StartRecordName=page["NextRecordName"], StartRecordType=page["NextRecordType"]
                        )
                        if "NextRecordIdentifier" in page:
                            kwargs["StartRecordIdentifier"] = page["NextRecordIdentifier"]
                        continue
                break
        except (BotoCoreError, ClientError) as exc:
            raise RouterError(f"{self!r}: cannot read the records: {exc}") from exc
        missing = [f"{side} ({self.ids[side]})" for side in self.ids if side not in found]
        if missing:
            raise RouterError(
                f"{self!r}: weighted record(s) {', '.join(missing)} missing; create both records "
                "(same name and type, SetIdentifier and Weight) before the canary"
            )
        for side, rs in found.items():
            if "Weight" not in rs:
                raise RouterError(f"{self!r}: record {self.ids[side]} is not a weighted record")
        return found

    def get_candidate_weight(self) -> int:
        rs = self.records()
        return _percent(int(rs["baseline"]["Weight"]), int(rs["candidate"]["Weight"]), repr(self))

    def set_candidate_weight(self, pct: int) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        wanted = dict(zip(("baseline", "candidate"), guard_weights(pct, repr(self)), strict=True))
        rs = self.records()
        changes = [
            {"Action": "UPSERT", "ResourceRecordSet": {**rs[side], "Weight": wanted[side]}}
            for side in ("baseline", "candidate")
            if int(rs[side]["Weight"]) != wanted[side]
        ]
        if not changes:
            return pct  # idempotent: nothing to write
        # One batch: Route 53 applies it atomically, so no moment has both sides at their old/new mix.
        try:
            self.client.change_resource_record_sets(
                HostedZoneId=self.zone,
                ChangeBatch={"Comment": f"canary: candidate {pct}%", "Changes": changes},
            )
        except (BotoCoreError, ClientError) as exc:
            raise RouterError(f"{self!r}: could not set candidate {pct}%: {exc}") from exc
        confirmed = self.get_candidate_weight()
        if confirmed != pct:
            raise RouterError(f"{self!r}: asked for candidate {pct}%, records report {confirmed}%")
        return confirmed


def router_from_spec(spec: Any, *, client: Any = None, credentials: Any = None) -> Any:
    """The Router a workload's RouterSpec names; `client` is a ready boto3 client (elbv2 / route53),
    `credentials` Google credentials for gcp_urlmap (None: application default credentials)."""
    from migration_waves.canary.router import LocalRouter

    if spec.kind == "local":
        return LocalRouter(str(spec.admin))
    if spec.kind == "gcp_urlmap":
        from migration_waves.canary.gcp_router import GcpUrlMapRouter

        return GcpUrlMapRouter(
            spec.project, spec.url_map, spec.baseline_backend_service, spec.candidate_backend_service,
            path_matcher=spec.path_matcher, credentials=credentials, api_endpoint=spec.endpoint_url,
        )  # fmt: skip
    aws = {"client": client, "region": spec.region, "endpoint_url": spec.endpoint_url}
    if spec.kind == "aws_alb":
        return AlbRouter(
            spec.listener_arn, spec.baseline_target_group_arn, spec.candidate_target_group_arn, **aws
        )
    if spec.kind == "route53":
        return Route53Router(
            spec.hosted_zone_id, spec.record_name, spec.baseline_set_identifier,
            spec.candidate_set_identifier, record_type=spec.record_type, **aws,
        )  # fmt: skip
    raise ValueError(f"router kind {spec.kind!r} is unknown; use local, aws_alb, route53 or gcp_urlmap")
