"""Disk throughput limits (docker's --device-read-bps/-write-bps/-read-iops/-write-iops,
--blkio-weight, --blkio-weight-device), measured on a loop device.

kran has no ``--device`` yet, so the container reaches the loop device through a filesystem on
it: an ext4 made on /dev/loopN, mounted on the host and bound in with ``-v``.  ``dd`` with
O_DIRECT bypasses the page cache, so every block is a bio the container's process submits to
/dev/loopN, which the cgroup's throttle on the device's major:minor meters.  Times are taken
inside the container (/proc/uptime), so start-up is not counted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.conftest import api, api_busybox  # noqa: F401 - fixtures
from tests.runtime.conftest import CGROUP_PARENT, Runtime, make_rootfs

MB = 1024 * 1024
TIMED = "a=$(cut -d' ' -f1 /proc/uptime); {cmd} 2>/dev/null; b=$(cut -d' ' -f1 /proc/uptime); echo \"$a $b\""


def _sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def loop(tmp_path: Path):
    """(device, mount point): an ext4 on a fresh loop device holding an 8 MiB file ``data``."""
    for tool in ("losetup", "mkfs.ext4"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is required (apt-get install util-linux e2fsprogs)")
    img, mnt = tmp_path / "disk.img", tmp_path / "mnt"
    with open(img, "wb") as f:
        f.truncate(64 * MB)
    dev = _sh("losetup", "-f", "--show", str(img))
    sched = Path(f"/sys/block/{os.path.basename(dev)}/queue/scheduler")
    old = sched.read_text().split("[")[1].split("]")[0]
    mounted = False
    try:
        _sh("mkfs.ext4", "-q", dev)
        mnt.mkdir()
        _sh("mount", dev, str(mnt))
        mounted = True
        with open(mnt / "data", "wb") as f:
            f.write(os.urandom(8 * MB))
            os.fsync(f.fileno())
        yield dev, mnt
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mnt)], check=False)
        subprocess.run(["losetup", "-d", dev], check=False)
        try:
            sched.write_text(old)
        except OSError:
            pass


def _seconds(out: str) -> float:
    a, b = out.split()[-2:]
    return float(b) - float(a)


def _timed(kran, *args: str, cmd: str) -> float:
    return _seconds(kran(*args, "sh", "-c", TIMED.format(cmd=cmd)).out)


def _cgroup(cid: str, name: str) -> str:
    """A v1 blkio file of the container (v2: the io file it maps to)."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        v2 = {"blkio.throttle.read_bps_device": "io.max", "blkio.throttle.write_bps_device": "io.max",
              "blkio.throttle.read_iops_device": "io.max", "blkio.throttle.write_iops_device": "io.max"}
        return Path(f"/sys/fs/cgroup/kran/{cid}/{v2.get(name, name)}").read_text()
    return Path(f"/sys/fs/cgroup/blkio/kran/{cid}/{name}").read_text()


def _weight_file() -> str:
    return "blkio.bfq.weight" if not os.path.exists("/sys/fs/cgroup/blkio/blkio.weight") else "blkio.weight"


def _devnum(dev: str) -> str:
    st = os.stat(dev)
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def _around(t: float, want: float) -> None:
    assert want * 0.8 <= t <= want * 1.2, f"took {t:.2f} s, not {want} s +-20 %"


def test_throttles_hold_and_update_live(kran, busybox, loop):
    dev, mnt = loop
    vol = f"{mnt}:/data"
    # unthrottled: the 8 MiB come in a fraction of a second
    assert _timed(kran, "run", "--rm", "-v", vol, "busybox",
                  cmd="dd if=/data/data of=/dev/null bs=1M count=8 iflag=direct") < 1.5
    cid = kran("run", "-d", "-v", vol, "--device-read-bps", f"{dev}:2mb", "--device-write-bps", f"{dev}:2MB",
               "--device-read-iops", f"{dev}:500", "--device-write-iops", f"{dev}:500", "--blkio-weight", "300",
               "busybox", "sleep", "300").out.strip()
    num = _devnum(dev)
    if not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        assert _cgroup(cid, "blkio.throttle.read_bps_device").split() == [num, str(2 * MB)]
        assert _cgroup(cid, "blkio.throttle.write_bps_device").split() == [num, str(2 * MB)]
        assert _cgroup(cid, "blkio.throttle.read_iops_device").split() == [num, "500"]
        assert _cgroup(cid, "blkio.throttle.write_iops_device").split() == [num, "500"]
        assert _cgroup(cid, _weight_file()).split()[-1] == "300"
    else:
        assert f"{num} rbps={2 * MB} wbps={2 * MB} riops=500 wiops=500" in _cgroup(cid, "io.max")
    h = json.loads(kran("inspect", cid).out)[0]["HostConfig"]
    assert h["BlkioDeviceReadBps"] == [{"Path": dev, "Rate": 2 * MB}]
    assert h["BlkioDeviceWriteIOps"] == [{"Path": dev, "Rate": 500}]
    assert h["BlkioWeight"] == 300 and h["BlkioWeightDevice"] == []
    spec = json.loads((kran.root / "containers" / cid / "config.json").read_text())
    bio = spec["linux"]["resources"]["blockIO"]
    major, minor = (int(x) for x in num.split(":"))
    assert bio["throttleReadBpsDevice"] == [{"major": major, "minor": minor, "rate": 2 * MB}]
    assert bio["weight"] == 300

    def exec_timed(cmd: str) -> float:
        return _seconds(kran("exec", cid, "sh", "-c", TIMED.format(cmd=cmd)).out)

    _around(exec_timed("dd if=/data/data of=/dev/null bs=1M count=8 iflag=direct"), 4.0)  # 8 MiB at 2 MiB/s
    _around(exec_timed("dd if=/dev/zero of=/data/w bs=1M count=8 oflag=direct"), 4.0)
    _around(exec_timed("dd if=/data/data of=/dev/null bs=4k count=2000 iflag=direct"), 4.0)  # 2000 at 500/s
    _around(exec_timed("dd if=/dev/zero of=/data/w bs=4k count=2000 oflag=direct"), 4.0)
    # kran update (Podman's update flags; docker update has --blkio-weight): live, and recorded
    kran("update", "--device-read-bps", f"{dev}:4mb", "--blkio-weight", "500", cid)
    _around(exec_timed("dd if=/data/data of=/dev/null bs=1M count=8 iflag=direct"), 2.0)
    if not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        assert _cgroup(cid, "blkio.throttle.read_bps_device").split() == [num, str(4 * MB)]
        assert _cgroup(cid, _weight_file()).split()[-1] == "500"
    h = json.loads(kran("inspect", cid).out)[0]["HostConfig"]
    assert h["BlkioDeviceReadBps"] == [{"Path": dev, "Rate": 4 * MB}] and h["BlkioWeight"] == 500
    kran("update", "--device-read-bps", f"{dev}:0", cid)  # 0 lifts it
    assert exec_timed("dd if=/data/data of=/dev/null bs=1M count=8 iflag=direct") < 1.5
    p = kran("update", "--blkio-weight", "5", cid, check=False)
    assert p.returncode == 1 and "Range of blkio weight is from 10 to 1000" in p.err  # docker update: 1


def test_runc_enforces_the_same_spec(kran, busybox, loop):
    dev, mnt = loop
    if not shutil.which("runc"):
        pytest.fail("runc is required (apt-get install runc)")
    _around(_timed(kran, "run", "--rm", "--runtime", "runc", "-v", f"{mnt}:/data", "--device-read-bps", f"{dev}:2mb",
                   "busybox", cmd="dd if=/data/data of=/dev/null bs=1M count=8 iflag=direct"), 4.0)


@pytest.mark.parametrize("name", ["kran", "runc"])
def test_runtime_bundle_with_block_io(tmp_path, loop, name):
    """What containerd hands a runtime: a bundle whose config.json carries linux.resources.blockIO."""
    dev, mnt = loop
    if name == "runc" and not shutil.which("runc"):
        pytest.fail("runc is required (apt-get install runc)")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    make_rootfs(bundle / "rootfs")
    subprocess.run([sys.executable, "-m", "kran.runtime.cli", "spec", "--bundle", str(bundle)], check=True,
                   env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
    spec = json.loads((bundle / "config.json").read_text())
    major, minor = (int(x) for x in _devnum(dev).split(":"))
    cid = f"kb-{os.getpid()}-{name}"
    spec["process"].update(terminal=False, args=["sh", "-c", TIMED.format(
        cmd="dd if=/mnt/data of=/dev/null bs=1M count=8 iflag=direct")])
    spec["root"]["readonly"] = False
    spec["linux"]["cgroupsPath"] = f"/{CGROUP_PARENT}/{cid}"
    spec["linux"].setdefault("resources", {})["blockIO"] = {
        "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 2 * MB}]}
    spec["mounts"].append({"destination": "/mnt", "type": "bind", "source": str(mnt), "options": ["rbind", "rw"]})
    (bundle / "config.json").write_text(json.dumps(spec))
    rt = Runtime(name, tmp_path / "state")
    rt.created.append(cid)
    try:
        out = rt("run", "--bundle", str(bundle), cid, timeout=60).stdout
        _around(_seconds(out), 4.0)
    finally:
        rt.cleanup()


def test_weight_device_needs_bfq(kran, busybox, loop):
    dev, _ = loop
    if os.path.exists("/sys/fs/cgroup/blkio/blkio.weight"):
        pytest.fail("this test expects BFQ's per-device weights (no CFQ blkio.weight on this kernel)")
    sched = Path(f"/sys/block/{os.path.basename(dev)}/queue/scheduler")
    sched.write_text("none")
    p = kran("create", "--blkio-weight-device", f"{dev}:200", "busybox", "true", check=False)
    assert p.returncode == 125
    assert f"--blkio-weight-device {dev}: its I/O scheduler is none, weights need bfq" in p.err
    assert kran("ps", "-aq").out.strip() == ""
    sched.write_text("bfq")
    cid = kran("run", "-d", "--blkio-weight-device", f"{dev}:200", "busybox", "sleep", "60").out.strip()
    assert f"{_devnum(dev)} 200" in _cgroup(cid, "blkio.bfq.weight_device")
    assert json.loads(kran("inspect", cid).out)[0]["HostConfig"]["BlkioWeightDevice"] == [{"Path": dev, "Weight": 200}]
    kran("rm", "-f", cid)


def test_bad_input_is_one_line_before_anything_exists(kran, busybox, loop, tmp_path):
    dev, _ = loop
    cases = [
        (["--device-read-bps", f"{dev}:fast"], f'invalid argument "{dev}:fast" for "--device-read-bps" flag: '
                                                f"invalid rate for device: {dev}:fast. The correct format is"),
        (["--device-read-bps", "/dev/kran-nope:1mb"], "stat /dev/kran-nope: no such file or directory"),
        (["--device-write-bps", "/dev/null:1mb"], "/dev/null is not a block device"),
        (["--device-read-iops", f"{dev}:1.5"], f"invalid rate for device: {dev}:1.5. The correct format is "
                                               "<device-path>:<number>. Number must be a positive integer"),
        (["--device-write-iops", "sda:10"], "bad format for device path: sda:10"),
        (["--blkio-weight", "5"], "Range of blkio weight is from 10 to 1000"),
        (["--blkio-weight-device", f"{dev}:5"], f"invalid weight for device: {dev}:5"),
    ]
    for flags, msg in cases:
        p = kran("create", *flags, "busybox", "true", check=False)
        assert p.returncode == 125, (flags, p.err)
        assert msg in p.err.splitlines()[0], (flags, p.err)
        assert "Traceback" not in p.err
    assert kran("ps", "-aq").out.strip() == ""
    assert not (kran.root / "containers").exists() or not list((kran.root / "containers").iterdir())


def test_api_create_inspect_update(api, api_busybox, loop):  # noqa: F811
    import docker

    dev, mnt = loop
    c = api.client()
    hc = c.api.create_host_config(binds=[f"{mnt}:/data"], device_read_bps=[{"Path": dev, "Rate": 2 * MB}],
                                  device_write_iops=[{"Path": dev, "Rate": 300}], blkio_weight=200)
    cid = c.api.create_container("busybox", "sleep 300", host_config=hc)["Id"]
    try:
        h = c.api.inspect_container(cid)["HostConfig"]
        assert h["BlkioDeviceReadBps"] == [{"Path": dev, "Rate": 2 * MB}]
        assert h["BlkioDeviceWriteIOps"] == [{"Path": dev, "Rate": 300}] and h["BlkioWeight"] == 200
        c.api.start(cid)
        if not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            assert _cgroup(cid, "blkio.throttle.read_bps_device").split() == [_devnum(dev), str(2 * MB)]
        out = c.containers.get(cid).exec_run(["sh", "-c", TIMED.format(
            cmd="dd if=/data/data of=/dev/null bs=1M count=8 iflag=direct")]).output.decode()
        _around(_seconds(out), 4.0)
        c.api.update_container(cid, blkio_weight=700)
        assert c.api.inspect_container(cid)["HostConfig"]["BlkioWeight"] == 700
        if not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            assert _cgroup(cid, _weight_file()).split()[-1] == "700"
    finally:
        c.api.remove_container(cid, force=True)
    bad = c.api.create_host_config(device_read_bps=[{"Path": "/dev/kran-nope", "Rate": 1}])
    with pytest.raises(docker.errors.APIError) as e:
        c.api.create_container("busybox", "true", host_config=bad)
    assert e.value.status_code == 400 and "stat /dev/kran-nope: no such file or directory" in str(e.value)
    assert c.api.containers(all=True) == []
