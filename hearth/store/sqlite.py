"""The durable store: queue, history and job states in one SQLite database (WAL).

Two tables. ``queue`` holds pending and running prompts; when a prompt ends its row moves to
``history`` in the same transaction, so a prompt is always in exactly one place. JSON columns
are stored as text and served by concatenation, so /queue and /history never re-parse.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from hearth.store import jsonsafe

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SERVER_STOPPED_MESSAGE = "The server stopped while this prompt was running; it was not completed."

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS queue (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id    TEXT NOT NULL UNIQUE,
    number       REAL NOT NULL,
    number_json  TEXT NOT NULL,
    prompt       TEXT NOT NULL,
    extra_data   TEXT NOT NULL,
    outputs      TEXT NOT NULL,
    client_id    TEXT,
    running      INTEGER NOT NULL DEFAULT 0,
    create_time  INTEGER NOT NULL,
    start_time   INTEGER
);
CREATE INDEX IF NOT EXISTS queue_order ON queue (running, number, seq);
CREATE TABLE IF NOT EXISTS history (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id    TEXT NOT NULL UNIQUE,
    number       REAL NOT NULL,
    number_json  TEXT NOT NULL,
    prompt       TEXT NOT NULL,
    extra_data   TEXT NOT NULL,
    outputs      TEXT NOT NULL,
    result       TEXT NOT NULL,
    status       TEXT NOT NULL,
    meta         TEXT NOT NULL,
    job_status   TEXT NOT NULL,
    create_time  INTEGER NOT NULL,
    start_time   INTEGER,
    end_time     INTEGER NOT NULL
);
"""


def now_ms() -> int:
    return int(time.time() * 1000)


def dumps(value: Any) -> str:
    """Strict JSON (non-finite floats become null): /history and /queue are served from these texts."""
    return jsonsafe.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def database_path(database_url: str | None, user_dir: Path) -> Path:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or a plain path; default user/hearth.db."""
    if not database_url:
        return user_dir / "hearth.db"
    if database_url.startswith("sqlite:///"):
        raw = database_url[len("sqlite:///"):]
        return Path(raw) if raw.startswith("/") else Path.cwd() / raw
    if "://" in database_url:
        raise ValueError(f"unsupported --database-url {database_url!r}: only sqlite:/// URLs are supported")
    return Path(database_url)


@dataclass
class QueuedPrompt:
    number: float
    number_json: str
    prompt_id: str
    prompt_json: str
    extra_data_json: str
    outputs_json: str
    client_id: str | None
    create_time: int
    start_time: int | None = None

    def as_item_json(self) -> str:
        """ComfyUI's 5-tuple [number, prompt_id, prompt, extra_data, outputs_to_execute]."""
        return (f"[{self.number_json}, {json.dumps(self.prompt_id)}, {self.prompt_json}, "
                f"{self.extra_data_json}, {self.outputs_json}]")

    @property
    def prompt(self) -> dict:
        return json.loads(self.prompt_json)

    @property
    def extra_data(self) -> dict:
        return json.loads(self.extra_data_json)

    @property
    def outputs_to_execute(self) -> list:
        return json.loads(self.outputs_json)


_QUEUE_COLS = ("number, number_json, prompt_id, prompt, extra_data, outputs, client_id, create_time, "
               "start_time")


class Store:
    """All access goes through one connection under a lock; callers are the HTTP loop and the worker."""

    def __init__(self, path: Path, history_max_items: int = 10000):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.history_max_items = history_max_items
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives process crashes (kill -9); only power loss can drop the last commits.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        row = self._db.execute("SELECT value FROM meta WHERE key='next_number'").fetchone()
        self._next_number = int(row[0]) if row else 0
        self._pending = self._db.execute("SELECT COUNT(*) FROM queue WHERE running=0").fetchone()[0]
        self._history_count = self._db.execute("SELECT COUNT(*) FROM history").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def integrity_ok(self) -> bool:
        with self._lock:
            return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # --- queue ---------------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """After a crash or restart: prompts that were running are recorded as failed. Returns their ids."""
        failed: list[str] = []
        with self._lock:
            rows = self._db.execute(f"SELECT {_QUEUE_COLS} FROM queue WHERE running=1 ORDER BY seq").fetchall()
            for row in rows:
                item = QueuedPrompt(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8])
                msg = ["execution_error", {
                    "prompt_id": item.prompt_id, "node_id": None, "node_type": None, "executed": [],
                    "exception_message": SERVER_STOPPED_MESSAGE, "exception_type": "ServerStopped",
                    "traceback": [], "current_inputs": {}, "current_outputs": [], "timestamp": now_ms()}]
                self._finish_locked(item, status_str="error", completed=False, messages=[msg], outputs={},
                                    meta={}, job_status="failed")
                failed.append(item.prompt_id)
        if failed:
            log.warning("marked %d prompt(s) that were running at the last stop as failed", len(failed))
        return failed

    def enqueue(self, prompt_id: str, prompt_json: str, extra_data_json: str, outputs_json: str,
                client_id: str | None, number: float | None = None, front: bool = False) -> float:
        """Queue a prompt with ComfyUI's number/front semantics; returns the number it got."""
        with self._lock:
            if number is None:
                n = self._next_number
                self._next_number += 1
                number_value: float = -n if front else n
                number_json = json.dumps(number_value)
            else:
                number_value = float(number)
                number_json = json.dumps(number_value)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO queue (prompt_id, number, number_json, prompt, extra_data, outputs, client_id, "
                    "create_time) VALUES (?,?,?,?,?,?,?,?)",
                    (prompt_id, number_value, number_json, prompt_json, extra_data_json, outputs_json, client_id,
                     now_ms()))
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('next_number', ?)", (str(self._next_number),))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._pending += 1
            return number_value

    def exists(self, prompt_id: str) -> bool:
        with self._lock:
            return bool(self._db.execute(
                "SELECT 1 FROM queue WHERE prompt_id=? UNION ALL SELECT 1 FROM history WHERE prompt_id=?",
                (prompt_id, prompt_id)).fetchone())

    def claim_next(self) -> QueuedPrompt | None:
        """Mark the next pending prompt (lowest number, then oldest) running and return it."""
        with self._lock:
            row = self._db.execute(
                f"SELECT seq, {_QUEUE_COLS} FROM queue WHERE running=0 ORDER BY number, seq LIMIT 1").fetchone()
            if row is None:
                return None
            start = now_ms()
            self._db.execute("UPDATE queue SET running=1, start_time=? WHERE seq=?", (start, row[0]))
            self._pending -= 1
            return QueuedPrompt(row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], start)

    @property
    def pending_count(self) -> int:
        return self._pending

    def queue_items(self, running: bool, max_items: int | None = None, offset: int = 0) -> list[QueuedPrompt]:
        sql = f"SELECT {_QUEUE_COLS} FROM queue WHERE running=? ORDER BY number, seq"
        params: list[Any] = [1 if running else 0]
        if max_items is not None:
            sql += " LIMIT ? OFFSET ?"
            params += [max_items, max(offset, 0)]
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [QueuedPrompt(*r) for r in rows]

    def get_queued(self, prompt_id: str) -> tuple[QueuedPrompt, bool] | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_QUEUE_COLS}, running FROM queue WHERE prompt_id=?",
                                   (prompt_id,)).fetchone()
        if row is None:
            return None
        return QueuedPrompt(*row[:9]), bool(row[9])

    def delete_pending(self, prompt_ids: Iterable[str]) -> list[str]:
        deleted = []
        with self._lock:
            for pid in prompt_ids:
                cur = self._db.execute("DELETE FROM queue WHERE prompt_id=? AND running=0", (pid,))
                if cur.rowcount:
                    deleted.append(pid)
            self._pending -= len(deleted)
        return deleted

    def clear_pending(self) -> int:
        with self._lock:
            n = self._db.execute("DELETE FROM queue WHERE running=0").rowcount
            self._pending = 0
        return n

    def cancel_pending(self, prompt_id: str) -> bool:
        """Cancel a pending prompt: it leaves the queue and is recorded as cancelled (jobs API)."""
        with self._lock:
            found = self.get_queued(prompt_id)
            if found is None or found[1]:
                return False
            item = found[0]
            msg = ["execution_interrupted", {"prompt_id": prompt_id, "node_id": None, "node_type": None,
                                             "executed": [], "timestamp": now_ms()}]
            self._finish_locked(item, status_str="error", completed=False, messages=[msg], outputs={}, meta={},
                                job_status="cancelled", was_pending=True)
            return True

    def finish(self, item: QueuedPrompt, *, status_str: str, completed: bool, messages: list, outputs: dict,
               meta: dict, job_status: str) -> None:
        with self._lock:
            self._finish_locked(item, status_str=status_str, completed=completed, messages=messages,
                                outputs=outputs, meta=meta, job_status=job_status)

    def _finish_locked(self, item: QueuedPrompt, *, status_str: str, completed: bool, messages: list,
                       outputs: dict, meta: dict, job_status: str, was_pending: bool = False) -> None:
        status = {"status_str": status_str, "completed": completed, "messages": messages}
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("DELETE FROM queue WHERE prompt_id=?", (item.prompt_id,))
            self._db.execute(
                "INSERT OR REPLACE INTO history (prompt_id, number, number_json, prompt, extra_data, outputs, "
                "result, status, meta, job_status, create_time, start_time, end_time) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (item.prompt_id, item.number, item.number_json, item.prompt_json, item.extra_data_json,
                 item.outputs_json, dumps(outputs), dumps(status), dumps(meta), job_status, item.create_time,
                 item.start_time, now_ms()))
            history_count = self._history_count + 1  # applied once committed
            if history_count > self.history_max_items:
                excess = history_count - self.history_max_items
                self._db.execute("DELETE FROM history WHERE seq IN (SELECT seq FROM history ORDER BY seq LIMIT ?)",
                                 (excess,))
                history_count -= excess
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._history_count = history_count
        if was_pending:
            self._pending -= 1

    # --- history -------------------------------------------------------------------------------
    _HIST_COLS = "prompt_id, number_json, prompt, extra_data, outputs, result, status, meta"

    @staticmethod
    def _entry_json(row) -> str:
        pid, number_json, prompt, extra, outs, result, status, meta = row
        return (f'{{"prompt": [{number_json}, {json.dumps(pid)}, {prompt}, {extra}, {outs}], '
                f'"outputs": {result}, "status": {status}, "meta": {meta}}}')

    def history_json(self, max_items: int | None = None, offset: int = -1) -> str:
        """ComfyUI's GET /history: oldest first; max_items without offset gives the newest N."""
        with self._lock:
            if max_items is not None and offset < 0:
                # the newest N read backwards from the end: as fast with 10,000 entries as with 10
                rows = self._db.execute(
                    f"SELECT {self._HIST_COLS} FROM (SELECT seq, {self._HIST_COLS} FROM history "
                    "ORDER BY seq DESC LIMIT ?) ORDER BY seq", (max(max_items, 0),)).fetchall()
                return "{" + ", ".join(f"{json.dumps(r[0])}: {self._entry_json(r)}" for r in rows) + "}"
            offset = max(offset, 0)
            limit = -1 if max_items is None else max(max_items, 0)
            rows = self._db.execute(f"SELECT {self._HIST_COLS} FROM history ORDER BY seq LIMIT ? OFFSET ?",
                                    (limit, offset)).fetchall()
        return "{" + ", ".join(f"{json.dumps(r[0])}: {self._entry_json(r)}" for r in rows) + "}"

    def history_entry_json(self, prompt_id: str) -> str:
        with self._lock:
            row = self._db.execute(f"SELECT {self._HIST_COLS} FROM history WHERE prompt_id=?",
                                   (prompt_id,)).fetchone()
        if row is None:
            return "{}"
        return "{" + f"{json.dumps(row[0])}: {self._entry_json(row)}" + "}"

    def history_count(self) -> int:
        return self._history_count

    def delete_history(self, prompt_ids: Iterable[str]) -> None:
        with self._lock:
            for pid in prompt_ids:
                self._history_count -= self._db.execute("DELETE FROM history WHERE prompt_id=?", (pid,)).rowcount

    def clear_history(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM history")
            self._history_count = 0

    # --- jobs ----------------------------------------------------------------------------------
    def jobs_rows(self) -> list[dict]:
        """Every job (queued and finished) as plain dicts; the jobs API filters and sorts them."""
        with self._lock:
            q = self._db.execute(
                "SELECT prompt_id, number, running, create_time, start_time, extra_data FROM queue").fetchall()
            h = self._db.execute(
                "SELECT prompt_id, number, job_status, create_time, start_time, end_time, result, status, "
                "extra_data FROM history").fetchall()
        out = []
        for pid, number, running, ct, st, extra in q:
            out.append({"id": pid, "status": "in_progress" if running else "pending", "priority": number,
                        "create_time": ct, "execution_start_time": st, "execution_end_time": None,
                        "_extra": extra, "_result": None, "_status": None})
        for pid, number, js, ct, st, et, result, status, extra in h:
            out.append({"id": pid, "status": js, "priority": number, "create_time": ct,
                        "execution_start_time": st, "execution_end_time": et, "_extra": extra,
                        "_result": result, "_status": status})
        return out

    # One list over both tables, in the order jobs_rows() gives them (queue rows, then history rows,
    # each by seq): sorting below is stable over that order, as the jobs API has always been. Only the
    # small columns take part in filtering and sorting; the page's rows are fetched afterwards.
    _JOBS_KEYS = (
        "SELECT CASE running WHEN 1 THEN 'in_progress' ELSE 'pending' END AS status, create_time, start_time, "
        "NULL AS end_time, 0 AS src, seq{extra} FROM queue "
        "UNION ALL SELECT job_status, create_time, start_time, end_time, 1, seq{extra} FROM history")

    def jobs_page(self, statuses: list[str] | None, workflow_id: str | None, sort_by: str, descending: bool,
                  limit: int | None, offset: int) -> tuple[list[dict], int]:
        """(rows of the requested page, total matching) for the jobs API, filtered, sorted and paged in
        SQL so a request costs about the same with 10,000 jobs as with 10. Rows as jobs_rows() gives them."""
        where, params = [], []
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params += statuses
        by_status, status_params = ((" WHERE " + where[0]) if where else ""), list(params)
        if workflow_id:
            where.append("json_type(extra_data, '$.extra_pnginfo.workflow.id') = 'text' AND "
                         "json_extract(extra_data, '$.extra_pnginfo.workflow.id') = ?")
            params.append(workflow_id)
        union = self._JOBS_KEYS.format(extra=", extra_data" if workflow_id else "")
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        key = ("COALESCE(create_time, 0)" if sort_by == "create_time" else
               "CASE WHEN start_time IS NOT NULL AND end_time IS NOT NULL THEN end_time - start_time ELSE -1 END")
        order = f" ORDER BY {key} {'DESC' if descending else 'ASC'}, src, seq"
        with self._lock:
            try:
                total = self._db.execute(f"SELECT COUNT(*) FROM ({union}){clause}", params).fetchone()[0]
                keys = self._db.execute(f"SELECT src, seq FROM ({union}){clause}{order} LIMIT ? OFFSET ?",
                                        [*params, -1 if limit is None else limit, offset]).fetchall()
            except sqlite3.OperationalError:
                if not workflow_id:
                    raise
                # an SQLite built without its JSON functions: filter the workflow id here instead
                keys = [(src, seq) for src, seq, extra in self._db.execute(
                    f"SELECT src, seq, extra_data FROM ({union}){by_status}{order}", status_params).fetchall()
                    if _workflow_id(extra) == workflow_id]
                total = len(keys)
                keys = keys[offset:] if limit is None else keys[offset: offset + limit]
            rows = [self._job_by_seq(src, seq) for src, seq in keys]
        return [r for r in rows if r is not None], total

    def _job_by_seq(self, src: int, seq: int) -> dict | None:
        if src == 0:
            row = self._db.execute(
                "SELECT prompt_id, CASE running WHEN 1 THEN 'in_progress' ELSE 'pending' END, number, create_time, "
                "start_time, NULL, extra_data, NULL, NULL FROM queue WHERE seq=?", (seq,)).fetchone()
        else:
            row = self._db.execute(
                "SELECT prompt_id, job_status, number, create_time, start_time, end_time, extra_data, result, status "
                "FROM history WHERE seq=?", (seq,)).fetchone()
        if row is None:
            return None
        pid, st, number, ct, start, end, extra, result, status = row
        return {"id": pid, "status": st, "priority": number, "create_time": ct, "execution_start_time": start,
                "execution_end_time": end, "_extra": extra, "_result": result, "_status": status}

    def job_row(self, prompt_id: str) -> dict | None:
        with self._lock:
            q = self._db.execute(
                "SELECT prompt_id, number, running, create_time, start_time, extra_data, prompt FROM queue "
                "WHERE prompt_id=?", (prompt_id,)).fetchone()
            if q:
                pid, number, running, ct, st, extra, prompt = q
                return {"id": pid, "status": "in_progress" if running else "pending", "priority": number,
                        "create_time": ct, "execution_start_time": st, "execution_end_time": None,
                        "_extra": extra, "_result": None, "_status": None, "_prompt": prompt}
            h = self._db.execute(
                "SELECT prompt_id, number, job_status, create_time, start_time, end_time, result, status, "
                "extra_data, prompt FROM history WHERE prompt_id=?", (prompt_id,)).fetchone()
        if h is None:
            return None
        pid, number, js, ct, st, et, result, status, extra, prompt = h
        return {"id": pid, "status": js, "priority": number, "create_time": ct, "execution_start_time": st,
                "execution_end_time": et, "_extra": extra, "_result": result, "_status": status,
                "_prompt": prompt}


def _workflow_id(extra_json: str) -> str | None:
    try:
        wid = json.loads(extra_json).get("extra_pnginfo", {}).get("workflow", {}).get("id")
    except (ValueError, AttributeError):
        return None
    return wid if isinstance(wid, str) else None


def open_store(database_url: str | None, user_dir: Path, history_max_items: int) -> Store:
    path = database_path(database_url, user_dir)
    os.makedirs(path.parent, exist_ok=True)
    return Store(path, history_max_items)
