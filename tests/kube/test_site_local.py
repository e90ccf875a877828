"""inventories/local (the default single-node deployment, `make render`) on a real control plane:
one KWOK node from the cpu-vm hardware fixture, MicroK8s' hostpath storage class, the hub's
objects and the real z2jh 4.4.0 chart installed by real Helm with the role's values (rendered by
the role, tests/kube/sites.py), as roles/jupyterhub/tasks/apply.yml does."""
from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import yaml

from checks import assert_second_run_changes_nothing, check_hub, rerun
from cluster import SiteCluster
from deploy import site_cluster
from sites import CHART_FILES

pytestmark = pytest.mark.kube


@pytest.fixture(scope="module")
def local(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteCluster]:
    yield from site_cluster("local", request, tmp_path_factory)


def test_hub_proxy_and_image_puller_on_the_single_node(local: SiteCluster) -> None:
    assert local.site.gpu_role is None and not local.site.network.get("values")  # GPU and IB are off here
    placed = check_hub(local)
    node = local.site.node_names["localhost"]
    assert placed == {"hub": node, "proxy": node}
    svc = local.get(f"/api/v1/namespaces/{local.site.hub_namespace}/services/proxy-public")
    assert svc["spec"]["type"] == "NodePort" and [p["nodePort"] for p in svc["spec"]["ports"]] == [30080]
    # z2jh's user storage: PVCs of MicroK8s' hostpath-storage class (the class the real API now knows).
    assert local.site.hub_values["singleuser"]["storage"]["dynamic"]["storageClass"] == "microk8s-hostpath"
    assert local.get("/apis/storage.k8s.io/v1/storageclasses/microk8s-hostpath")["provisioner"] == "microk8s.io/hostpath"


def test_install_went_through_the_role_helm_call(local: SiteCluster) -> None:
    result = local.notes["record"]["helm"]["jupyterhub"]
    assert result["changed"] is True
    assert "--atomic" in result["command"] and "--wait" in result["command"] and "--timeout 15m" in result["command"]
    history = local.history(local.notes["record"]["hub_release"], local.site.hub_namespace)
    assert [(h["revision"], h["status"], h["chart"]) for h in history] == [(1, "deployed", "jupyterhub-4.4.0")]


def test_a_value_the_chart_schema_refuses_is_refused_by_helm(local: SiteCluster, tmp_path) -> None:
    """z2jh's values.schema.json (additionalProperties: false): a misspelled key never reaches the
    cluster; the role's helm step fails with Helm's schema message and the release stays as it was."""
    ns, release = local.site.hub_namespace, local.notes["record"]["hub_release"]
    bad = copy.deepcopy(local.site.hub_values)
    bad["proxy"]["service"]["nodePort"] = bad["proxy"]["service"].pop("nodePorts")  # a typo of nodePorts
    values = tmp_path / "values.yaml"
    values.write_text("---\n" + yaml.safe_dump(bad, sort_keys=True, width=120))
    before = local.get(f"/apis/apps/v1/namespaces/{ns}/deployments/proxy")["metadata"]["generation"]
    result = local.helm_module(name=release, chart_ref=str(CHART_FILES["jupyterhub"]), release_namespace=ns,
                               values_files=[str(values)], wait=True, atomic=True, timeout="15m")
    assert result.get("failed") is True
    message = (result.get("stderr") or "") + (result.get("msg") or "")
    assert "values don't meet the specifications of the schema" in message, message
    assert "additional properties 'nodePort' not allowed" in message, message
    history = local.history(release, ns)
    assert [(h["revision"], h["status"]) for h in history] == [(1, "deployed")]
    assert local.get(f"/apis/apps/v1/namespaces/{ns}/deployments/proxy")["metadata"]["generation"] == before
    # A wrong type is refused the same way (the schema types nodePorts.http as an integer).
    bad = copy.deepcopy(local.site.hub_values)
    bad["proxy"]["service"]["nodePorts"]["http"] = "30080"
    values.write_text("---\n" + yaml.safe_dump(bad, sort_keys=True, width=120))
    proc = local.helm("upgrade", release, str(CHART_FILES["jupyterhub"]), "-n", ns, "-f", str(values), check=False)
    assert proc.returncode != 0 and "values don't meet the specifications of the schema" in proc.stderr, proc.stderr


def test_a_second_run_with_the_same_values_changes_nothing(local: SiteCluster) -> None:
    record = local.notes["record"]
    result = rerun(local, [("jupyterhub", record["hub_release"], local.site.hub_namespace)], {"jupyterhub": 2})
    report = assert_second_run_changes_nothing(result["jupyterhub"], "jupyterhub")
    assert "deployments/hub" in report["first_upgrade"]  # z2jh's one-time roll after the install (see the helper)
