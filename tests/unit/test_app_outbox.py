"""How the worker's calls reach the HTTP loop: in order, batched, never later than the window."""
from __future__ import annotations

import asyncio
import threading

import pytest


@pytest.fixture
def app(tmp_path):
    from hearth.app import App
    from hearth.config import config_from_args

    app = App(config_from_args(["--base-directory", str(tmp_path), "--disable-all-custom-nodes"]))
    yield app
    app.store.close()


async def _until(predicate, limit: float = 20.0) -> None:
    """Wait for an event-driven outcome; the limit only turns a hang into a failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        assert loop.time() < deadline, "never delivered"
        await asyncio.sleep(0.01)


def _on_thread(fn) -> None:
    thread = threading.Thread(target=fn)
    thread.start()
    thread.join()


def test_a_flush_delivers_everything_queued_in_order_without_waiting_for_the_window(app):
    async def main():
        app.loop = asyncio.get_running_loop()
        app.event_window_s = 3600.0  # only the flush can deliver these
        seen: list[tuple[str, int]] = []
        loop_thread = threading.get_ident()

        def record(n: int) -> None:
            assert threading.get_ident() == loop_thread
            seen.append(("call", n))

        def worker() -> None:
            for n in range(50):
                app._to_loop(record, n)
            app.flush_to_loop()

        _on_thread(worker)
        await _until(lambda: len(seen) == 50)
        assert seen == [("call", n) for n in range(50)]
        assert app._drain_timer is None  # the flush cancelled the armed timer

    asyncio.run(main())


def test_without_a_flush_the_window_timer_delivers(app):
    """A long node emits `executing` and then runs for minutes: its events must not wait for the end."""
    async def main():
        app.loop = asyncio.get_running_loop()
        app.event_window_s = 0.02
        seen: list[int] = []
        _on_thread(lambda: app._to_loop(seen.append, 1))
        await _until(lambda: seen == [1])
        _on_thread(lambda: [app._to_loop(seen.append, n) for n in (2, 3)])  # a second window re-arms
        await _until(lambda: seen == [1, 2, 3])

    asyncio.run(main())


def test_a_submitted_prompts_status_follows_the_worker_events_emitted_before_it(app):
    """POST /prompt sends its status on the loop at once: worker events still waiting in the window were
    emitted earlier, so they go out first (each status describes the queue after its own change)."""
    async def main():
        app.loop = asyncio.get_running_loop()
        app.event_window_s = 3600.0
        order: list[str] = []
        app.hub.broadcast_status = lambda remaining=None: order.append("status")
        _on_thread(lambda: app._to_loop(order.append, "worker event"))
        result = app.submit({"prompt": {"1": {"class_type": "EmptyImage", "inputs": {
            "width": 8, "height": 8, "batch_size": 1, "color": 0}}, "2": {"class_type": "PreviewImage",
                                                                        "inputs": {"images": ["1", 0]}}}})
        assert result.status == 200, result.body
        assert order == ["worker event", "status"]

    asyncio.run(main())


def test_a_prompt_queued_from_a_node_thread_sends_its_status_through_the_loop(app):
    """compat prompt_queue.put runs on the worker thread: the hub must only be touched on the loop."""
    async def main():
        app.loop = asyncio.get_running_loop()
        app.event_window_s = 0.01
        loop_thread = threading.get_ident()
        threads: list[int] = []
        app.hub.broadcast_status = lambda remaining=None: threads.append(threading.get_ident())
        results = []
        _on_thread(lambda: results.append(app.submit({"prompt": {"1": {"class_type": "EmptyImage", "inputs": {
            "width": 8, "height": 8, "batch_size": 1, "color": 0}}, "2": {"class_type": "PreviewImage",
                                                                        "inputs": {"images": ["1", 0]}}}})))
        assert results[0].status == 200, results[0].body
        await _until(lambda: threads)
        assert threads == [loop_thread]

    asyncio.run(main())


def test_a_call_queued_during_a_drain_does_not_strand_later_calls(app):
    """A log line written on the loop while the outbox drains queues a call that this same drain pops;
    the timer it armed must still fire, or every later call would wait for the end of the prompt."""
    async def main():
        app.loop = asyncio.get_running_loop()
        app.event_window_s = 0.02
        seen: list[str] = []
        app._to_loop(lambda: app._to_loop(seen.append, "inner"))
        app._drain_outbox()  # as POST /prompt does
        assert seen == ["inner"]
        await asyncio.sleep(0.05)  # the armed timer fires (empty)
        _on_thread(lambda: app._to_loop(seen.append, "later"))  # a node's progress, no flush coming
        await _until(lambda: seen == ["inner", "later"])

    asyncio.run(main())


def test_on_loop_keeps_call_order_from_any_thread(app):
    """PromptServer.send_sync outside a node goes through App.on_loop: from another thread it queues behind
    the worker's waiting events; on the loop it runs at once, after draining them."""
    async def main():
        app.loop = asyncio.get_running_loop()
        app.event_window_s = 3600.0
        seen: list[str] = []
        _on_thread(lambda: app._to_loop(seen.append, "worker 1"))
        _on_thread(lambda: app.on_loop(seen.append, "pack thread"))
        assert seen == []  # both wait in the window
        _on_thread(lambda: app._to_loop(seen.append, "worker 2"))
        app.on_loop(seen.append, "route on the loop")
        assert seen == ["worker 1", "pack thread", "worker 2", "route on the loop"]

    asyncio.run(main())
