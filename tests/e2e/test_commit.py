"""commit: a container's changes become a new layer on its image (the seed's backup story)."""

from __future__ import annotations

import json
import subprocess
import time


def test_commit_keeps_exactly_the_changes(kran, busybox, tmp_path):
    kran("run", "-d", "--name", "db", "busybox", "sh", "-c",
         "echo precious > /data.txt; rm /etc/group; mkdir /site; echo hello > /site/index.html; sleep 300")
    deadline = time.time() + 10
    while kran("exec", "db", "cat", "/site/index.html", check=False).returncode and time.time() < deadline:
        time.sleep(0.05)
    image_id = kran("commit", "-m", "nightly", "-a", "ops", "-c", 'CMD ["cat", "/data.txt"]', "db", "backup:1").out.strip()
    assert image_id.startswith("sha256:")
    # the container kept running (paused only while its layer was read), and events show the pause
    assert kran("inspect", "-f", "{{.State.Status}}", "db").out == "running\n"
    actions = [line.split()[2] for line in kran("events", "--until", "0s", "--filter", "container=db").out.splitlines()]
    assert "pause" in actions and "unpause" in actions and actions.index("pause") < actions.index("unpause")
    # a new container from the committed image sees exactly the changes
    assert kran("run", "--rm", "backup:1").out == "precious\n"
    assert kran("run", "--rm", "backup:1", "cat", "/site/index.html").out == "hello\n"
    r = kran("run", "--rm", "backup:1", "cat", "/etc/group", check=False)
    assert r.returncode != 0 and "No such file" in r.err
    assert kran("run", "--rm", "backup:1", "cat", "/etc/passwd").out.startswith("root:")
    info = json.loads(kran("image", "inspect", "backup:1").out)[0]
    assert info["Comment"] == "nightly" and info["Author"] == "ops"
    assert len(info["RootFS"]["Layers"]) == 2
    hist = kran("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", "backup:1").out.splitlines()
    assert hist[0].startswith("sh -c echo precious") and hist[0].endswith("|nightly")
    # the mount points every container gets are not part of the layer
    r = kran("run", "--rm", "backup:1", "sh", "-c", "ls -la /etc/hostname")
    assert r.returncode == 0  # bind-mounted anew for this container
    # another tool reads the committed image
    archive = tmp_path / "backup.tar"
    kran("save", "-o", str(archive), "backup:1")
    out = subprocess.run(["skopeo", "inspect", f"docker-archive:{archive}"], capture_output=True, text=True, check=True)
    assert len(json.loads(out.stdout)["Layers"]) == 2


def test_commit_of_a_paused_container_leaves_it_paused(kran, busybox):
    kran("run", "-d", "--name", "pz", "busybox", "sleep", "300")
    kran("pause", "pz")
    kran("commit", "pz", "pz:snap")
    assert kran("inspect", "-f", "{{.State.Status}}", "pz").out == "paused\n"
    kran("unpause", "pz")
    r = kran("commit", "nosuch", check=False)
    assert r.returncode == 1 and "No such container: nosuch" in r.err
