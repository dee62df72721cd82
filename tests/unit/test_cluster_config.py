"""The local standalone cluster's pure parts: the kernels' link addresses, the kernel command line in
cluster mode, the opt-in, and the daemons' (so the executors') environment."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from chalicelib.engine import sandbox
from chalicelib.local import cluster


def test_kernel_link_addresses_are_distinct_and_inside_100_64_slash_10() -> None:
    pids = [1, 2, 4242, 65_536, 4_194_303]
    addresses = [sandbox.kernel_address(pid) for pid in pids]
    assert len(set(addresses)) == len(pids)
    net = ipaddress.ip_network("100.64.0.0/10")
    assert all(ipaddress.ip_address(a) in net for a in addresses)
    assert sandbox.kernel_address(1) == "100.64.0.1"


def test_the_kernel_command_asks_for_a_cluster_link_only_in_cluster_mode(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sandbox, "namespaces_available", lambda: True)
    monkeypatch.delenv("SPARKGATE_KERNEL_NETWORK", raising=False)
    monkeypatch.delenv("SPARKGATE_CLUSTER_NETNS", raising=False)
    assert "--cluster-net" not in sandbox.kernel_command(5, "u1", 200_001, tmp_path)
    monkeypatch.setenv("SPARKGATE_CLUSTER_NETNS", "sparkgate-cluster-7")
    monkeypatch.setenv("SPARKGATE_CLUSTER_ADDRESS", "10.213.0.9")
    command = sandbox.kernel_command(5, "u1", 200_001, tmp_path)
    assert command[command.index("--cluster-net") + 1] == "sparkgate-cluster-7,10.213.0.9"
    args = sandbox.parse(command[4:])
    assert args.cluster_net == "sparkgate-cluster-7,10.213.0.9" and args.namespaces and not args.host_network
    assert "--cluster-net" not in sandbox.kernel_command(5, "u1", None, tmp_path)  # no uid: no namespaces
    monkeypatch.setenv("SPARKGATE_KERNEL_NETWORK", "host")
    assert "--cluster-net" not in sandbox.kernel_command(5, "u1", 200_001, tmp_path)


def test_cluster_is_opt_in_and_only_standalone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPARKGATE_CLUSTER", raising=False)
    assert not cluster.wanted()
    for value in ("", "none", "local"):
        monkeypatch.setenv("SPARKGATE_CLUSTER", value)
        assert not cluster.wanted()
    monkeypatch.setenv("SPARKGATE_CLUSTER", "Standalone")
    assert cluster.wanted()
    monkeypatch.setenv("SPARKGATE_CLUSTER", "yarn")
    with pytest.raises(RuntimeError, match="only 'standalone'"):
        cluster.wanted()


def test_the_daemons_environment_holds_no_platform_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "SPARKGATE_ADMIN_PASSWORD"):
        monkeypatch.setenv(name, "secret-" + name)
    monkeypatch.setenv("SPARKGATE_WS_ENDPOINT", "http://127.0.0.1:1/@connections")
    env = cluster.daemon_env(cluster.ClusterPlan(folder=tmp_path / "c"))
    assert not [k for k, v in env.items() if "secret-" in v or k.startswith("AWS_")]
    assert "SPARKGATE_WS_ENDPOINT" not in env and "SPARKGATE_STATE_DIR" not in env
    assert env["SPARK_LOCAL_IP"] == "127.0.0.1"  # the daemons' web UIs stay on the cluster's own loopback
    assert env["HOME"] == str(tmp_path / "c" / "work")


def test_without_namespaces_the_cluster_binds_loopback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPARKGATE_ISOLATION", "none")
    found = cluster.plan(tmp_path / "state")
    assert found.netns is None and found.uid is None and found.address == "127.0.0.1"
    assert found.master_url.startswith("spark://127.0.0.1:") and found.folder == tmp_path / "state-cluster"


def test_a_symlink_in_place_of_the_cluster_folders_is_refused_and_not_followed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SPARKGATE_ISOLATION", "none")
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    for i, planted in enumerate(
        (
            "state-cluster",
            "state-cluster/logs",
            "state-cluster/driver-conf",
            "state-cluster/work",
            "state-cluster/work/conf",
        )
    ):
        base = tmp_path / f"try-{i}"
        place = base / planted
        place.parent.mkdir(parents=True)
        place.symlink_to(target)
        with pytest.raises(RuntimeError, match="refusing"):
            cluster.StandaloneCluster(base / "state")._prepare_folder()
        assert list(target.iterdir()) == [] and target.stat().st_mode & 0o777 == 0o700, planted


def test_the_cluster_folders_are_private_and_the_driver_defaults_readable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SPARKGATE_ISOLATION", "none")
    made = cluster.StandaloneCluster(tmp_path / "state")
    made._prepare_folder()
    folder = tmp_path / "state-cluster"
    modes = {p.name: p.stat().st_mode & 0o777 for p in [folder, *folder.iterdir()]}
    assert modes == {"state-cluster": 0o711, "logs": 0o700, "driver-conf": 0o755, "work": 0o700}
    assert sorted(p.name for p in (folder / "work").iterdir()) == ["conf", "worker-0", "worker-1"]
    conf = made._driver_conf() / "spark-defaults.conf"
    assert conf.stat().st_mode & 0o777 == 0o644
    lines = dict(line.split(" ", 1) for line in conf.read_text().splitlines())
    assert lines["spark.cores.max"] == "2" and lines["spark.dynamicAllocation.enabled"] == "true"
    assert lines["spark.ui.enabled"] == "false"
