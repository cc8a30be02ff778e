"""The lifecycle's state record in process: what each step records, what a reload reads
back, and that memory and disk agree when a write fails."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from appliance.lifecycle.state import STATE_NAME, StateStore

DIGEST = "sha256:" + "ab" * 32


def reloaded(store: StateStore) -> StateStore:
    fresh = StateStore(store.path.parent)
    fresh.load()
    return fresh


def test_a_missing_file_is_an_empty_record(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.load()
    assert store.record.models == {}
    assert store.active_version("m") is None
    assert store.highest_activated("m") == 0
    assert store.digest("m", 1) == ""
    assert not (tmp_path / STATE_NAME).exists()  # reading never writes


def test_an_install_is_pending_until_recorded(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.record_pending("m", 3, DIGEST)
    assert reloaded(store).pending() == [("m", 3)]
    store.record_install("m", 3, DIGEST)
    back = reloaded(store)
    assert back.pending() == []
    assert back.digest("m", 3) == DIGEST
    assert back.record.models["m"].versions[3].installed_at


def test_activations_keep_the_rollback_list_and_the_anti_rollback_floor(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.record_activation("m", 1, None)
    store.record_activation("m", 2, 1)
    store.record_activation("m", 3, 2)
    back = reloaded(store)
    assert back.active_version("m") == 3
    assert back.model("m").previous == [1, 2]  # most recent last: rollback pops 2 first
    store.record_rollback("m", 2)
    back = reloaded(store)
    assert back.active_version("m") == 2
    assert back.model("m").previous == [1]  # the abandoned 3 is not a rollback target
    assert back.highest_activated("m") == 3  # the floor stays where it was


def test_activating_a_previous_version_moves_it_off_the_rollback_list(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    for version, previous in ((1, None), (2, 1), (3, 2), (1, 3)):
        store.record_activation("m", version, previous)
    assert store.model("m").previous == [2, 3]
    assert store.active_version("m") == 1


def test_forgetting_a_version_drops_its_digest_and_rollback_entry(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.record_install("m", 1, DIGEST)
    store.record_activation("m", 1, None)
    store.record_activation("m", 2, 1)
    store.forget("m", 1)
    back = reloaded(store)
    assert back.digest("m", 1) == ""
    assert back.model("m").previous == []
    store.forget("never-seen", 1)  # nothing to forget: no error, no write of a new model
    assert "never-seen" not in reloaded(store).record.models


def test_a_corrupt_record_is_set_aside_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / STATE_NAME).write_text('{"format": 1, "models": {"m": {"active": "three"}}}')
    store = StateStore(tmp_path)
    with caplog.at_level(logging.ERROR, logger="appliance.lifecycle.state"):
        store.load()
    assert store.record.models == {}
    assert not (tmp_path / STATE_NAME).exists()
    (aside,) = tmp_path.glob(f"{STATE_NAME}.corrupt-*")
    assert "three" in aside.read_text()
    assert "unreadable" in caplog.text and str(aside) in caplog.text


def test_the_file_is_replaced_whole_and_leaves_no_temporary_behind(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.record_activation("m", 1, None)
    store.record_activation("m", 2, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_NAME]
    saved = json.loads((tmp_path / STATE_NAME).read_text())
    assert saved["models"]["m"]["active"] == 2


def test_a_write_that_fails_leaves_memory_as_on_disk(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.record_activation("m", 1, None)
    # A folder where the temporary file must go makes every write fail, even for root.
    store.path = tmp_path / "not-a-folder" / STATE_NAME
    (tmp_path / "not-a-folder").write_text("")
    with pytest.raises(NotADirectoryError):
        store.record_activation("m", 2, 1)
    assert store.active_version("m") == 1
    assert store.model("m").previous == []
    store.path = tmp_path / STATE_NAME
    assert reloaded(store).active_version("m") == 1
