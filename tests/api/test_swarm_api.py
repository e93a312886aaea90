"""kran is never a swarm node: the swarm endpoints answer dockerd's 503, not a 404."""

from __future__ import annotations

import docker
import pytest


def test_swarm_endpoints_answer_503_like_a_node_outside_a_swarm(api):
    c = api.client()
    assert c.api.leave_swarm(force=True) is True  # docker-py takes the 503 as "nothing to leave"
    with pytest.raises(docker.errors.APIError) as e:
        c.api.leave_swarm(force=False)
    assert e.value.status_code == 503
    assert "not part of a swarm" in str(e.value)
    for call in (c.api.inspect_swarm, c.api.services, c.api.nodes, c.api.tasks):
        with pytest.raises(docker.errors.APIError) as e:
            call()
        assert e.value.status_code == 503
        assert "not a swarm manager" in str(e.value)


def test_docker_cli_service_ls_says_not_a_swarm_manager(api):
    p = api.docker("service", "ls", check=False)
    assert p.returncode == 1
    assert "not a swarm manager" in p.err
