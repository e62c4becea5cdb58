"""Load wave specs and golden images from YAML, and lint them with actionable problems."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from migration_waves.spec.governance import find_secrets, missing_tags
from migration_waves.spec.models import Dataset, GoldenImage, Site, WaveSpec, dataset_problems

SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a spec: where, what value, and how to fix it."""

    file: str
    field: str
    value: Any
    message: str

    def __str__(self) -> str:
        shown = "" if self.value is _MISSING else f" (value: {self.shown_value()!r})"
        return f"{self.file}: {self.field or '<root>'}: {self.message}{shown}"

    def shown_value(self) -> Any:
        """The value as lint may print it: never a credential, never a whole spec."""
        if self.value is _MISSING:
            return None
        if _SECRET_FIELD.search(self.field) or (
            isinstance(self.value, str) and find_secrets(f"v: {self.value}")
        ):
            return "<redacted>"
        if isinstance(self.value, dict | list) and len(repr(self.value)) > 200:
            return f"<{type(self.value).__name__} of {len(self.value)} items>"
        return self.value


_MISSING: Any = object()
_SECRET_FIELD = re.compile(r"(password|passwd|secret|token|api[_-]?key|access[_-]?key)", re.IGNORECASE)


class SpecError(ValueError):
    """A spec failed to load; carries every problem found, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


#: Tags pydantic inserts into an error's location for a discriminated union; not user-visible keys.
_UNION_TAGS = {"inference", "training", "datasync", "storage_transfer", "native"}


def _is_tag(loc: tuple[int | str, ...], i: int) -> bool:
    part, before = loc[i], loc[i - 1] if i else None
    if part in ("inference", "training"):
        return isinstance(before, int)  # workloads[i].<kind>
    return part in _UNION_TAGS and before == "engine_options"


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif _is_tag(loc, i):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _value_at(data: Any, loc: tuple[int | str, ...]) -> Any:
    cur = data
    for i, part in enumerate(loc):
        if _is_tag(loc, i):
            continue
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and part < len(cur):
            cur = cur[part]
        else:
            return _MISSING
    return cur


def _fix_hint(err: dict[str, Any], model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    kind = err["type"]
    msg = err["msg"]
    if kind == "extra_forbidden":
        return f"unknown key; remove it or fix its spelling ({msg})"
    if kind == "missing":
        return "required field is missing; add it"
    if kind in ("enum", "literal_error"):
        return f"{msg}"
    if kind == "string_pattern_mismatch":
        return "use lower-case letters, digits and '-' (at most 63 characters), e.g. digits-corpus"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "union_tag_invalid" and loc and loc[-1] == "engine_options":
        return (
            "engine_options apply only to engine: datasync or storage_transfer; set the dataset's engine, "
            "or remove engine_options"
        )
    if kind == "ip_any_network":
        return "not a CIDR network (host bits zero), e.g. 10.20.0.0/16"
    return msg


def _problems_from(exc: ValidationError, file: str, raw: Any, model: type[BaseModel]) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        message = _fix_hint(dict(err), model, loc)
        if loc[:1] == ("datasets",) and "engine_options" in loc:
            message = f"{_dataset_label(raw, loc)}: {message}"
        problems.append(
            Problem(
                file=file,
                field=_loc_to_path(loc),
                value=_value_at(raw, loc) if err["type"] != "missing" else _MISSING,
                message=message,
            )
        )
    return problems


def _dataset_label(raw: Any, loc: tuple[int | str, ...]) -> str:
    """'wave W, dataset D' for an error under datasets[i], from the raw mapping."""
    wave = raw.get("wave") if isinstance(raw, dict) else None
    item = _value_at(raw, loc[:2])
    name = item.get("name") if isinstance(item, dict) else None
    return f"wave {wave}, dataset {name if name is not None else loc[1]}"


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([Problem(str(path), "", _MISSING, f"cannot read the file: {exc.strerror}")]) from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(
            [Problem(str(path), where, _MISSING, f"not valid YAML: {getattr(exc, 'problem', exc)}")]
        ) from exc


def load_wave(path: str | Path) -> WaveSpec:
    """Load one wave spec; raise SpecError listing every problem."""
    path = Path(path)
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise SpecError(
            [Problem(str(path), "", _MISSING, "a wave spec is a YAML mapping with a 'wave:' key")]
        )
    references = _reference_problems(raw, str(path)) + _dataset_problems(raw, str(path))
    try:
        spec = WaveSpec.model_validate(raw)
    except ValidationError as exc:
        problems = _problems_from(exc, str(path), raw, WaveSpec)
        if references:  # precise field paths instead of the model validator's one root-level error
            problems = [p for p in problems if p.field] + references
        raise SpecError(problems) from None
    spec._source = path.resolve()
    return spec


def _reference_problems(raw: dict[str, Any], file: str) -> list[Problem]:
    """Cross-field rules on the raw mapping, so they are reported even beside other errors."""
    problems: list[Problem] = []
    sites = raw.get("sites") if isinstance(raw.get("sites"), dict) else {}
    known = ", ".join(sorted(sites)) or "none"

    def site_of(value: Any) -> str | None:
        return value.split(":", 1)[0] if isinstance(value, str) and ":" in value else None

    if isinstance(raw.get("after"), list) and raw.get("wave") in raw["after"]:
        i = raw["after"].index(raw["wave"])
        problems.append(
            Problem(file, f"after[{i}]", raw["wave"], "a wave cannot run after itself; remove it")
        )
    for key in ("datasets", "workloads"):
        items = raw.get(key) if isinstance(raw.get(key), list) else []
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            name = item.get("name")
            if isinstance(name, str) and name in seen:
                problems.append(
                    Problem(
                        file,
                        f"{key}[{i}].name",
                        name,
                        f"also used by {key}[{seen[name]}]; names must be unique in a wave",
                    )
                )
            elif isinstance(name, str):
                seen[name] = i
            for field in ("source", "target", "checkpoint"):
                site = site_of(item.get(field))
                if site is not None and site not in sites:
                    problems.append(
                        Problem(
                            file,
                            f"{key}[{i}].{field}",
                            item[field],
                            f"site {site!r} is not under sites (known: {known}); add it or fix the name",
                        )
                    )
    return problems


def _dataset_problems(raw: dict[str, Any], file: str) -> list[Problem]:
    """Managed-engine rules per dataset, with exact fields, even beside other errors in the spec.

    A dataset or site that does not validate on its own is left to the field errors pydantic gives.
    """
    sites: dict[str, Site] = {}
    for name, site in (raw.get("sites") if isinstance(raw.get("sites"), dict) else {}).items():
        try:
            sites[str(name)] = Site.model_validate(site)
        except ValidationError:
            continue
    items = raw.get("datasets") if isinstance(raw.get("datasets"), list) else []
    wave = str(raw.get("wave", Path(file).stem))
    problems: list[Problem] = []
    for i, item in enumerate(items):
        try:
            ds = Dataset.model_validate(item)
        except ValidationError:
            continue
        problems.extend(
            Problem(file, field, _MISSING if value is None else value, message)
            for field, value, message in dataset_problems(wave, i, ds, sites)
        )
    return problems


def load_golden_image(path: str | Path) -> GoldenImage:
    """Load one golden-image spec; raise SpecError listing every problem."""
    path = Path(path)
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise SpecError(
            [Problem(str(path), "", _MISSING, "a golden image is a YAML mapping with a 'name:' key")]
        )
    try:
        return GoldenImage.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(_problems_from(exc, str(path), raw, GoldenImage)) from None


def golden_image_for(spec: WaveSpec, name: str) -> GoldenImage:
    """The golden image a workload of this wave names, from the wave's golden_images folder."""
    folder = Path(spec.resolve_path(spec.golden_images))
    for suffix in SPEC_SUFFIXES:
        candidate = folder / f"{name}{suffix}"
        if candidate.exists():
            image = load_golden_image(candidate)
            if image.name != name:
                raise SpecError(
                    [
                        Problem(
                            str(candidate),
                            "name",
                            image.name,
                            f"file is {candidate.name} but name is not {name!r}",
                        )
                    ]
                )
            return image
    raise SpecError(
        [
            Problem(
                str(spec.source_file or spec.wave),
                "workloads[].golden_image",
                name,
                f"no golden image {name}.yaml in {folder}; add it or fix the name",
            )
        ]
    )


def spec_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders into the wave-spec files they hold (sorted)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.iterdir() if f.suffix in SPEC_SUFFIXES))
        else:
            files.append(p)
    return files


def lint_paths(paths: Iterable[str | Path]) -> tuple[list[WaveSpec], list[Problem]]:
    """Load every spec under paths; return the good ones and every problem, cross-wave ones too."""
    paths = list(paths)
    specs: list[WaveSpec] = []
    problems: list[Problem] = []
    for folder in (p for p in map(Path, paths) if p.is_dir()):
        if not spec_files([folder]):
            problems.append(
                Problem(str(folder), "", _MISSING, "no wave specs (*.yaml, *.yml) in this folder")
            )
    for file in spec_files(paths):
        problems.extend(_governance_text_problems(file))
        try:
            spec = load_wave(file)
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        specs.append(spec)
        problems.extend(
            Problem(str(file), field, _MISSING, f"{name}: missing required tags {missing}; add them to its "
                    "tags or to the wave's tags")
            for field, name, missing in missing_tags(spec)
        )  # fmt: skip
        for i, wl in enumerate(spec.workloads):
            try:
                golden_image_for(spec, wl.golden_image)
            except SpecError as exc:
                problems.extend(
                    Problem(
                        p.file,
                        f"workloads[{i}].golden_image" if p.file == str(file) else p.field,
                        p.value,
                        p.message,
                    )
                    for p in exc.problems
                )
            if hasattr(wl, "payloads") and not Path(spec.resolve_path(wl.payloads)).exists():
                problems.append(
                    Problem(
                        str(file),
                        f"workloads[{i}].payloads",
                        wl.payloads,
                        "file not found; give a JSONL file of request bodies",
                    )
                )
        pricing = Path(spec.resolve_path(spec.budget.pricing))
        if not pricing.exists():
            problems.append(
                Problem(str(file), "budget.pricing", spec.budget.pricing, f"pricing file {pricing} not found")
            )
    problems.extend(_cross_wave_problems(specs))
    return specs, problems


def _governance_text_problems(file: Path) -> list[Problem]:
    """Credential-looking strings in a spec file: line and kind, never the secret itself."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError:
        return []  # load_wave reports the unreadable file
    return [
        Problem(
            str(file),
            f"line {line}",
            _MISSING,
            f"looks like a secret ({label}); keep credentials in an Airflow connection or a secrets "
            "backend and name its conn_id",
        )
        for line, label in find_secrets(text)
    ]


def _cross_wave_problems(specs: list[WaveSpec]) -> list[Problem]:
    problems: list[Problem] = []
    by_name: dict[str, WaveSpec] = {}
    for spec in specs:
        if spec.wave in by_name:
            problems.append(
                Problem(
                    str(spec.source_file),
                    "wave",
                    spec.wave,
                    f"also defined in {by_name[spec.wave].source_file}; wave names must be unique",
                )
            )
        by_name[spec.wave] = spec
    for spec in specs:
        for i, dep in enumerate(spec.after):
            if dep not in by_name:
                problems.append(
                    Problem(
                        str(spec.source_file),
                        f"after[{i}]",
                        dep,
                        f"no wave named {dep!r} in the linted specs (known: {', '.join(sorted(by_name))})",
                    )
                )
            elif by_name[dep].order >= spec.order:
                problems.append(
                    Problem(
                        str(spec.source_file),
                        f"after[{i}]",
                        dep,
                        f"wave {dep!r} has order {by_name[dep].order}, not below this wave's "
                        f"{spec.order}; fix the orders",
                    )
                )
    return problems


def load_waves_dir(folder: str | Path) -> list[WaveSpec]:
    """Every valid wave spec in a folder, sorted by order; raise SpecError if any is bad."""
    specs, problems = lint_paths([folder])
    if problems:
        raise SpecError(problems)
    return sorted(specs, key=lambda s: (s.order, s.wave))
