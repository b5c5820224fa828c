from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from broker import config
from tests.brokerproc import BrokerProcess
from tests.helpers import job, register, submit


def test_a_malformed_setting_stops_the_broker_at_start(tmp_path: Path) -> None:
    env = {**os.environ, "BROKER_PORT": "eighty", "BROKER_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "broker", "serve"], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "BROKER_PORT='eighty'" in done.stderr


def test_flags_beat_the_environment_which_beats_defaults() -> None:
    s = config.load({"port": "9001"}, {"BROKER_PORT": "9000", "BROKER_MAX_DATA_SIZE": "5",
                                      "REDIS_URL": "redis://h:1/0"})
    assert (s.port, s.max_data_size, s.redis_url, s.host) == (9001, 5, "redis://h:1/0",
                                                              "127.0.0.1")
    with pytest.raises(config.SettingsError, match="BROKER_CONTRACT_WAIT_MAX"):
        config.load({}, {"BROKER_CONTRACT_WAIT_MAX": "-1"})
    assert config.unknown_variables({"BROKER_PROT": "1", "BROKER_URL": "x"}) == ["BROKER_PROT"]


def test_without_redis_url_it_runs_its_own_redis_server_that_keeps_jobs(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = BrokerProcess(None, data).start()
    try:
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            job_id = submit(c, "sh")
    finally:
        proc.stop()
    assert (data / "appendonlydir").is_dir()
    again = BrokerProcess(None, data).start()
    try:
        with httpx.Client(base_url=again.url, timeout=30) as c:
            assert job(c, job_id)["status"] == "pending"
    finally:
        again.stop()


def test_without_redis_server_it_falls_back_to_memory_and_says_so(tmp_path: Path) -> None:
    bare_path = tmp_path / "bin"
    bare_path.mkdir()
    (bare_path / "python").symlink_to(sys.executable)
    proc = BrokerProcess(None, tmp_path / "data", {"PATH": str(bare_path),
                                                   "BROKER_LOG_LEVEL": "info"}).start()
    try:
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            job_id = submit(c, "sh")
            assert job(c, job_id)["status"] == "pending"
    finally:
        proc.stop()
    assert "NOTHING WILL PERSIST" in proc.log()


def test_unknown_paths_and_methods_answer_in_the_one_error_shape(
        client: httpx.Client) -> None:
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = client.patch("/worker")
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
    assert set(wrong.headers["allow"].split(", ")) == {"POST", "GET", "HEAD", "DELETE"}
    contract = client.post("/worker/contract")
    assert contract.status_code == 405


def test_a_head_of_the_contract_hands_out_nothing(client: httpx.Client) -> None:
    worker = register(client, "sh")
    job_id = submit(client, "sh")
    resp = client.head("/worker/contract", headers={"X-Worker-Id": worker})
    assert resp.status_code == 405 and resp.headers["allow"] == "GET"
    assert job(client, job_id)["status"] == "pending"


def test_the_readme_settings_table_names_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme[readme.index("## Settings"):readme.index("## Redis keys")]
    names = [f.env for f in config.FIELDS] + [env for _, env, _ in config.TOKENS]
    assert [n for n in names if f"`{n}`" not in table] == []
