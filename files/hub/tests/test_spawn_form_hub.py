"""The server options form through a real JupyterHub running LabhubKubeSpawner.

Rendering the form and refusing a forged post happen on the hub before any
Kubernetes call, so this runs without a cluster (KUBECONFIG points at an address
where nothing listens; no server is ever started here).
"""

from conftest import form_login, xsrf_of
from labhub_hub.passwords import hash_password

CONFIG = {
    "auth": {
        "modes": ["local_groups"],
        "local_groups": {
            "groups": {
                "physics": {"members": ["ann"], "password_hash": hash_password("physics-pw", iterations=2000)},
                "gpu-team": {"members": ["octo"], "password_hash": hash_password("gpu-pw", iterations=2000)},
            }
        },
    },
    "spawn": {
        "default_image": "quay.io/jupyter/base-notebook:2025-01-01",
        "gpu": {"enabled": True},
        "profiles": [
            {"slug": "small", "display_name": "Small CPU", "cpu_limit": 2, "mem_limit": "4Gi", "max_session_hours": 8},
            {"slug": "gpu", "display_name": "One GPU", "gpu": 1, "mem_limit": "16Gi"},
        ],
        "teams": {"physics": ["small"], "gpu-team": ["small", "gpu"]},
    },
}


def test_spawn_form_team_mapping_and_forged_posts_on_a_real_hub(start_hub):
    hub = start_hub(CONFIG, with_spawner=True)

    ann = hub.client()
    assert form_login(ann, "/hub/local_groups/login", "ann", "physics-pw").status_code == 302
    page = ann.get("/hub/spawn")
    assert page.status_code == 200, page.text
    assert 'value="small"' in page.text and 'value="gpu"' not in page.text
    assert 'name="session_hours"' in page.text

    forged = ann.post("/hub/spawn", data={"profile": "gpu", "session_hours": "1", "_xsrf": xsrf_of(ann)})
    assert forged.status_code == 403
    assert "Profile &#39;gpu&#39; is not available to user &#39;ann&#39;" in forged.text or \
        "Profile 'gpu' is not available to user 'ann'" in forged.text
    too_long = ann.post("/hub/spawn", data={"profile": "small", "session_hours": "24", "_xsrf": xsrf_of(ann)})
    assert too_long.status_code == 400
    assert "maximum of 8 h" in too_long.text
    user = hub.api("GET", "/users/ann").json()
    assert user["server"] is None and user["pending"] is None

    octo = hub.client()
    assert form_login(octo, "/hub/local_groups/login", "octo", "gpu-pw").status_code == 302
    page = octo.get("/hub/spawn")
    assert 'value="small"' in page.text and 'value="gpu"' in page.text
