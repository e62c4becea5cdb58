"""Inventory loading: YAML + CSV rows, sizes with exact units, errors naming row and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from migration_waves.planning.inventory import InventoryError, load_inventory, parse_size

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "include" / "inventory" / "workloads.yaml"


@pytest.fixture
def inv_dir(tmp_path: Path) -> Path:
    """A copy of the shipped inventory whose relative paths still resolve (pricing, golden images)."""
    folder = tmp_path / "include" / "inventory"
    shutil.copytree(INVENTORY.parent, folder)
    for name in ("pricing", "golden_images", "demo"):
        shutil.copytree(REPO / "include" / name, tmp_path / "include" / name)
    return folder


def test_shipped_inventory_loads_yaml_and_csv_rows() -> None:
    inv = load_inventory(INVENTORY)
    names = [w.name for w in inv.workloads]
    assert {"digits-classifier", "digits-trainer"} <= set(names)  # the demo's workloads
    assert {"ci-gpu-runners", "support-chatbot"} <= set(names)  # imported from workloads.csv
    assert len(names) >= 12
    chatbot = inv.workload("support-chatbot")
    assert chatbot.depends_on == ["llm-finetune"] and chatbot.data_size == 400 * 10**9
    assert chatbot.tags == {"cost_center": "llm", "owner": "team-llm"}
    assert inv.workload("llm-finetune").datasets[1].size == round(1.4 * 2**40)  # TiB is binary
    # every workload carries the required tags (own or defaults)
    assert all(w.tags.get("cost_center") and w.tags.get("owner") for w in inv.workloads)


def test_csv_alone_takes_sites_and_defaults_from_the_yaml_beside_it(inv_dir: Path) -> None:
    sheet = inv_dir / "workloads.csv"
    # Alone, the sheet's reference to a YAML workload cannot resolve: an error naming it.
    with pytest.raises(
        InventoryError, match=r"support-chatbot\.depends_on.*no workload named 'llm-finetune'"
    ):
        load_inventory(sheet)
    lines = sheet.read_text().splitlines()
    (inv_dir / "team.csv").write_text("\n".join(lines[:3]) + "\n")
    inv = load_inventory(inv_dir / "team.csv")
    assert [w.name for w in inv.workloads] == ["ci-gpu-runners", "demand-forecast"]
    assert set(inv.sites) == {"onprem", "cloud"} and inv.defaults.owners.cutover == "team-sre"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2.5 TB", 2_500_000_000_000), ("800 GiB", 800 * 2**30), ("1 kB", 1000), ("3KiB", 3072), ("7 B", 7)],
)
def test_parse_size_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("12 TBs", "unknown unit 'TBs'"), ("500", "has no unit"), ("lots", "is not a size")],
)
def test_parse_size_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_size(text)


def test_missing_dimension_in_csv_names_row_and_field(inv_dir: Path) -> None:
    sheet = inv_dir / "workloads.csv"
    lines = sheet.read_text().splitlines()
    header = lines[0].split(",")
    col = header.index("compliance_scope")
    cells = lines[2].split(",")
    cells[col] = ""
    lines[2] = ",".join(cells)
    sheet.write_text("\n".join(lines) + "\n")
    with pytest.raises(InventoryError) as err:
        load_inventory(inv_dir / "workloads.yaml")
    [problem] = err.value.problems
    assert problem.file.endswith("workloads.csv")
    assert problem.field == "row 3 (demand-forecast).compliance_scope"
    assert "heatmap dimension compliance_scope is missing" in problem.message


def test_unknown_unit_and_bad_dependency_in_yaml(inv_dir: Path) -> None:
    path = inv_dir / "workloads.yaml"
    text = path.read_text()
    text = text.replace("data_size: 3.2 TB", "data_size: 3.2 TBytes", 1)
    text = text.replace("depends_on: [feature-store]", "depends_on: [feature-stor]", 1)
    path.write_text(text)
    with pytest.raises(InventoryError) as err:
        load_inventory(path)
    messages = [str(p) for p in err.value.problems]
    assert any(
        "workloads[3] (vision-pretrain).data_size: unknown unit 'TBytes'" in m and "'3.2 TBytes'" in m
        for m in messages
    ), messages
    assert any("search-ranker.depends_on" in m and "no workload named 'feature-stor'" in m for m in messages)


def test_missing_required_tag_is_an_error(inv_dir: Path) -> None:
    path = inv_dir / "workloads.yaml"
    text = path.read_text().replace("  tags: {cost_center: ml-platform}\n", "")
    path.write_text(text)
    with pytest.raises(
        InventoryError, match=r"digits-classifier\)\.tags: missing required tags \['cost_center'\]"
    ):
        load_inventory(path)
