"""The SQLite store: ordering, durability across reopen, recovery, retention, JSON shapes."""
from __future__ import annotations

import json

from hearth.store.sqlite import SERVER_STOPPED_MESSAGE, Store, database_path


def enqueue(store: Store, pid: str, **kw) -> float:
    return store.enqueue(pid, json.dumps({"1": {"class_type": "X", "inputs": {}}}), "{}", '["1"]', None, **kw)


def test_order_is_number_then_insertion(tmp_path):
    s = Store(tmp_path / "db.sqlite")
    assert enqueue(s, "a") == 0
    assert enqueue(s, "b") == 1
    assert enqueue(s, "c", front=True) == -2
    assert enqueue(s, "d", number=1.0) == 1.0
    assert [s.claim_next().prompt_id for _ in range(4)] == ["c", "a", "b", "d"]
    assert s.claim_next() is None


def test_reopen_keeps_pending_and_counter_and_recovers_running(tmp_path):
    path = tmp_path / "db.sqlite"
    s = Store(path)
    for pid in "abc":
        enqueue(s, pid)
    running = s.claim_next()
    assert running.prompt_id == "a"
    s.close()  # as if the process died here

    s2 = Store(path)
    assert s2.recover() == ["a"]
    entry = json.loads(s2.history_entry_json("a"))["a"]
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["messages"][0][1]["exception_message"] == SERVER_STOPPED_MESSAGE
    assert s2.pending_count == 2
    assert enqueue(s2, "d") == 3
    assert [s2.claim_next().prompt_id for _ in range(3)] == ["b", "c", "d"]
    assert s2.integrity_ok()


def test_history_shapes_pagination_and_retention(tmp_path):
    s = Store(tmp_path / "db.sqlite", history_max_items=3)
    for pid in "abcde":
        enqueue(s, pid)
        item = s.claim_next()
        s.finish(item, status_str="success", completed=True, messages=[["execution_start", {"prompt_id": pid}]],
                 outputs={"1": {"images": []}}, meta={}, job_status="completed")
    hist = json.loads(s.history_json())
    assert list(hist) == ["c", "d", "e"]
    assert hist["c"]["prompt"] == [2, "c", {"1": {"class_type": "X", "inputs": {}}}, {}, ["1"]]
    assert list(json.loads(s.history_json(max_items=1))) == ["e"]
    assert list(json.loads(s.history_json(max_items=1, offset=1))) == ["d"]
    assert json.loads(s.history_entry_json("zzz")) == {}
    s.delete_history(["d"])
    assert list(json.loads(s.history_json())) == ["c", "e"]
    s.clear_history()
    assert json.loads(s.history_json()) == {}


def test_queue_item_json_is_comfyui_five_tuple(tmp_path):
    s = Store(tmp_path / "db.sqlite")
    enqueue(s, "a")
    [item] = s.queue_items(running=False)
    assert json.loads(item.as_item_json()) == [0, "a", {"1": {"class_type": "X", "inputs": {}}}, {}, ["1"]]
    assert s.delete_pending(["a", "nope"]) == ["a"]
    assert s.pending_count == 0


def test_cancel_pending_records_cancelled(tmp_path):
    s = Store(tmp_path / "db.sqlite")
    enqueue(s, "a")
    assert s.cancel_pending("a")
    assert not s.cancel_pending("a")
    assert s.job_row("a")["status"] == "cancelled"
    assert s.pending_count == 0


def test_database_url_forms(tmp_path):
    assert database_path(None, tmp_path) == tmp_path / "hearth.db"
    assert str(database_path("sqlite:////abs/x.db", tmp_path)) == "/abs/x.db"
    import pytest
    with pytest.raises(ValueError):
        database_path("postgresql://x", tmp_path)


def test_a_failed_finish_changes_nothing(tmp_path):
    """Moving a prompt to history is one transaction: a failure inside it (here the retention trim)
    leaves the queue, history and the store's counters as they were."""
    import sqlite3

    s = Store(tmp_path / "db.sqlite", history_max_items=1)
    for pid in "ab":
        enqueue(s, pid)
    s.finish(s.claim_next(), status_str="success", completed=True, messages=[], outputs={}, meta={},
             job_status="completed")
    b = s.claim_next()
    s._db.execute("CREATE TEMP TRIGGER refuse BEFORE DELETE ON history BEGIN SELECT RAISE(ABORT, 'disk trouble'); END")
    try:
        s.finish(b, status_str="success", completed=True, messages=[], outputs={}, meta={}, job_status="completed")
    except sqlite3.DatabaseError:
        pass
    else:
        raise AssertionError("the trim was refused, so the finish must fail")
    s._db.execute("DROP TRIGGER refuse")
    assert s.history_count() == 1 and list(json.loads(s.history_json())) == ["a"]
    assert [i.prompt_id for i in s.queue_items(running=True)] == ["b"]
    s.finish(b, status_str="success", completed=True, messages=[], outputs={}, meta={}, job_status="completed")
    assert s.history_count() == 1 and list(json.loads(s.history_json())) == ["b"]
