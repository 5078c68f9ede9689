"""The monitoring profile's files: docker-compose.yml's prometheus and
grafana services, Prometheus's scrape config, Grafana's provisioning and the
itemflow dashboard, read as the containers would read them. No services run.

The dashboard is parsed with grafana-foundation-sdk. Its Dashboard.from_json
always makes a plain dashboard.Panel of each panel (a RowPanel for type
"row"): a panel type registered in the SDK's runtime only types the panel's
options and fieldConfig.custom. A target becomes the typed query of its
panel's datasource type (prometheus.Dataquery, with .expr) only when that
type is registered; otherwise it is an UnknownDataquery holding the raw
dict. Nothing registers the SDK's plugins on import, so the `sdk` fixture
registers the two this dashboard uses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import prometheus, timeseries
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel, VariableType

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DASHBOARD = ROOT / "deploy/grafana/itemflow-dashboard.json"
PROMETHEUS = ROOT / "deploy/prometheus/prometheus.yml"
GRAFANA_DATASOURCES = ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml"
GRAFANA_DASHBOARDS = ROOT / "deploy/grafana/provisioning/dashboards/itemflow.yml"

# The metric families shared/metrics.py exports, and the series each gives.
FAMILIES = {
    "itemflow_jobs": "gauge",
    "itemflow_queue_length": "gauge",
    "itemflow_job_runs": "counter",
    "itemflow_job_duration_seconds": "histogram",
    "itemflow_http_request_duration_seconds": "histogram",
}
SUFFIXES = {"gauge": ("",), "counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
EXPORTED = {family + suffix for family, kind in FAMILIES.items() for suffix in SUFFIXES[kind]}
METRIC_NAME = re.compile(r"itemflow_[a-z_]+")


def load_yaml(path: Path) -> Any:
    with path.open() as file:
        return yaml.safe_load(file)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE)
    return data


@pytest.fixture(scope="module")
def scrape_jobs() -> dict[str, dict[str, Any]]:
    config = load_yaml(PROMETHEUS)
    assert config["global"]["scrape_interval"] == "15s"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert len(jobs) == len(config["scrape_configs"]), "a job name is used twice"
    return jobs


@pytest.fixture(scope="module")
def dashboard_json() -> dict[str, Any]:
    with DASHBOARD.open() as file:
        data: dict[str, Any] = json.load(file)
    return data


@pytest.fixture
def sdk() -> Iterator[None]:
    """The SDK's Prometheus query and timeseries panel types registered in
    its runtime (a process-wide singleton), as they were after the test."""
    runtime = cogruntime.Runtime()
    queries, panels = dict(runtime.dataquery_variants), dict(runtime.panelcfg_variants)
    cogruntime.register_dataquery_variant(prometheus.variant_config())
    cogruntime.register_panelcfg_variant(timeseries.variant_config())
    yield
    runtime.dataquery_variants.clear()
    runtime.dataquery_variants.update(queries)
    runtime.panelcfg_variants.clear()
    runtime.panelcfg_variants.update(panels)


def binds(service: dict[str, Any]) -> dict[str, Path]:
    """A service's bind mounts (short syntax), target to source in the repo."""
    mounts = {}
    for volume in service["volumes"]:
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            mounts[target] = ROOT / source
    return mounts


def test_metric_families_are_the_ones_itemflow_exports() -> None:
    source = (ROOT / "shared/metrics.py").read_text()
    for family in FAMILIES:
        assert f'"{family}"' in source, family


def test_monitoring_services_are_in_the_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prometheus_service, grafana = services["prometheus"], services["grafana"]
    assert prometheus_service["image"] == "prom/prometheus:v2.55.1"
    assert grafana["image"] == "grafana/grafana:11.3.0"
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"], name
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), volume
                assert volume.endswith(":ro"), volume
            else:
                assert source in compose["volumes"], volume
    # Everything else runs without the profile.
    others = set(services) - {"prometheus", "grafana"}
    assert others and all("profiles" not in services[name] for name in others)
    assert prometheus_service["ports"] == ["9090:9090"]
    assert grafana["ports"] == ["3000:3000"]
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GRAFANA_ADMIN_PASSWORD" in grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]


def test_prometheus_writes_the_token_where_the_api_job_reads_it(
    compose: dict[str, Any], scrape_jobs: dict[str, dict[str, Any]]
) -> None:
    service = compose["services"]["prometheus"]
    mounts = binds(service)
    assert mounts["/etc/prometheus/prometheus.yml"] == PROMETHEUS
    token_file = scrape_jobs["itemflow-api"]["authorization"]["credentials_file"]
    # The token's folder must stay writable: no read-only mount may cover it.
    read_only = [volume.split(":")[1] for volume in service["volumes"] if volume.endswith(":ro")]
    assert not any(PurePosixPath(token_file).is_relative_to(target) for target in read_only)

    assert service["entrypoint"] == ["/bin/sh", "-c"]
    [script] = service["command"]
    # $$ is compose's escape: the container's shell expands the variable.
    assert f'printf %s "$$METRICS_TOKEN" > {token_file} && exec /bin/prometheus ' in script
    assert "--config.file=/etc/prometheus/prometheus.yml" in script.split()
    assert "--storage.tsdb.path=/prometheus" in script.split()
    assert "prometheus:/prometheus" in service["volumes"]

    # The token Prometheus sends is the one the API checks.
    api_token = compose["services"]["api"]["environment"]["METRICS_TOKEN"]
    # Required, with no default a reader of this file could guess.
    assert api_token.startswith("${METRICS_TOKEN:?"), api_token
    assert service["environment"]["METRICS_TOKEN"] == api_token
    assert compose["x-itemflow"]["environment"]["METRICS_TOKEN"] == api_token


def test_scrape_jobs_reach_the_api_and_every_worker(
    compose: dict[str, Any], scrape_jobs: dict[str, dict[str, Any]]
) -> None:
    services = compose["services"]
    api = scrape_jobs["itemflow-api"]
    assert api.get("metrics_path", "/metrics") == "/metrics"
    assert api["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/etc/prometheus/metrics-token",
    }
    [static] = api["static_configs"]
    assert static["targets"] == ["api:8000"]
    assert "8000:8000" in services["api"]["ports"]

    [dns] = scrape_jobs["itemflow-workers"]["dns_sd_configs"]
    assert dns["type"] == "A"
    assert sorted(dns["names"]) == ["io-worker", "worker"]
    for name in dns["names"]:
        environment = services[name]["environment"]
        # The worker's own server, on every interface of its container.
        assert environment["WORKER_METRICS_PORT"] == str(dns["port"]) == "9100", name
        assert environment["WORKER_METRICS_HOST"] == "0.0.0.0", name
        # The merge of the shared environment still holds.
        assert environment["DATABASE_URL"] == compose["x-itemflow"]["environment"]["DATABASE_URL"]


def test_grafana_provisions_the_datasource_and_the_dashboard(
    compose: dict[str, Any], dashboard_json: dict[str, Any]
) -> None:
    mounts = binds(compose["services"]["grafana"])
    assert mounts["/etc/grafana/provisioning"] == ROOT / "deploy/grafana/provisioning"
    assert GRAFANA_DATASOURCES.is_relative_to(mounts["/etc/grafana/provisioning"])
    assert GRAFANA_DASHBOARDS.is_relative_to(mounts["/etc/grafana/provisioning"])

    [datasource] = load_yaml(GRAFANA_DATASOURCES)["datasources"]
    assert datasource["name"] == "Prometheus"
    assert datasource["type"] == "prometheus"
    assert datasource["uid"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["isDefault"] is True
    assert "prometheus" in compose["services"]

    [provider] = load_yaml(GRAFANA_DASHBOARDS)["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    assert path == "/var/lib/grafana/dashboards"
    assert DASHBOARD.is_relative_to(mounts[path])

    # The dashboard's datasource variable starts on the provisioned one.
    [variable] = dashboard_json["templating"]["list"]
    assert variable["current"]["value"] == datasource["uid"]


def test_dashboard_parses_into_the_sdk_model(sdk: None, dashboard_json: dict[str, Any]) -> None:
    model = Dashboard.from_json(dashboard_json)
    assert model.title == "itemflow"
    assert model.uid == "itemflow"
    assert model.schema_version >= 39

    [variable] = model.templating.list_val or []
    assert variable.name == "datasource"
    assert variable.type_val == VariableType.DATASOURCE
    assert variable.query == "prometheus"

    panels = model.panels or []
    assert len(panels) == len(dashboard_json["panels"]) == 8
    assert len({panel.id_val for panel in panels}) == len(panels)
    for panel, raw in zip(panels, dashboard_json["panels"], strict=True):
        assert isinstance(panel, Panel), raw["title"]
        assert panel.type_val == "timeseries", panel.title
        assert panel.title == raw["title"]
        assert isinstance(panel.options, timeseries.Options), panel.title
        assert panel.datasource is not None, panel.title
        assert (panel.datasource.type_val, panel.datasource.uid) == ("prometheus", "${datasource}")
        assert panel.grid_pos is not None, panel.title
        assert panel.grid_pos.w > 0 and panel.grid_pos.h > 0, panel.title
        assert panel.grid_pos.x + panel.grid_pos.w <= 24, panel.title


def test_panels_do_not_overlap(dashboard_json: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard_json["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[x, y] = panel["title"]


def test_queries_use_only_the_metrics_itemflow_exports(
    sdk: None, dashboard_json: dict[str, Any]
) -> None:
    model = Dashboard.from_json(dashboard_json)
    used: set[str] = set()
    for panel, raw in zip(model.panels or [], dashboard_json["panels"], strict=True):
        assert isinstance(panel, Panel)
        targets = panel.targets or []
        assert targets, panel.title
        # Read through the typed model, which must have kept every target.
        assert all(isinstance(target, prometheus.Dataquery) for target in targets), panel.title
        queries = [target for target in targets if isinstance(target, prometheus.Dataquery)]
        assert [query.expr for query in queries] == [target["expr"] for target in raw["targets"]]
        ref_ids = [query.ref_id for query in queries]
        assert all(ref_ids) and len(set(ref_ids)) == len(ref_ids), panel.title
        for query in queries:
            names = set(METRIC_NAME.findall(query.expr))
            assert names, (panel.title, query.expr)
            assert names <= EXPORTED, (panel.title, names - EXPORTED)
            used |= names
    # Every family is on the dashboard.
    for family in FAMILIES:
        assert any(name.startswith(family) for name in used), family


def test_dashboard_survives_the_sdk_round_trip(sdk: None, dashboard_json: dict[str, Any]) -> None:
    model = Dashboard.from_json(dashboard_json)
    # to_json() is shallow (nested models stay objects): the SDK's encoder
    # finishes it.
    again = json.loads(json.dumps(model.to_json(), cls=JSONEncoder))
    assert (again["title"], again["uid"]) == ("itemflow", "itemflow")
    assert [panel["title"] for panel in again["panels"]] == [
        panel["title"] for panel in dashboard_json["panels"]
    ]
    assert [[target["expr"] for target in panel["targets"]] for panel in again["panels"]] == [
        [target["expr"] for target in panel["targets"]] for panel in dashboard_json["panels"]
    ]
    assert [panel["gridPos"] for panel in again["panels"]] == [
        panel["gridPos"] for panel in dashboard_json["panels"]
    ]
