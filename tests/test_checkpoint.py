import os
import stat

import pytest
import torch

from unetkit.atomic import atomic_path, atomic_write_text
from unetkit.checkpoint import load_checkpoint, save_checkpoint
from unetkit.config import Config
from unetkit.errors import CheckpointError


def test_round_trip_rebuilds_config_and_state(tmp_path):
    config = Config()
    config.model.base_width = 8
    path = tmp_path / "last.pt"
    save_checkpoint(path, config, {"w": torch.arange(3.0)}, epoch=4, best_dice=0.5)
    payload = load_checkpoint(path)
    assert payload["config"] == config
    assert payload["epoch"] == 4 and payload["best_dice"] == 0.5
    assert torch.equal(payload["model"]["w"], torch.arange(3.0))


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"format": "unetkit-checkpoint", "payload": RunsCode()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned.txt").exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04 truncated zip"])
def test_foreign_or_truncated_files_raise_checkpoint_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(path)


def test_truncated_real_checkpoint_is_refused(tmp_path):
    path = tmp_path / "cut.pt"
    save_checkpoint(path, Config(), {"w": torch.ones(1000)})
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_plain_torch_file_is_not_a_unetkit_checkpoint(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a unetkit checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")


def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "best.pt"
    atomic_write_text(target, "good")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_written_files_get_the_mode_a_plain_open_would_give(tmp_path):
    plain, atomic = tmp_path / "plain.txt", tmp_path / "atomic.txt"
    plain.write_text("x")
    atomic_write_text(atomic, "x")
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)  # not mkstemp's 0600
