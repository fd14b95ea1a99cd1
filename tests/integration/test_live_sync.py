"""The browser's sync module (assets/live.js) in real headless Chromium, driven frame by frame:
frames applied once and in order, one resync per gap however many frames arrive before the
snapshot, frames of a previous server start never replayed onto a new snapshot."""
from __future__ import annotations

import pytest

from config.settings import REPO_ROOT

HARNESS = """
window.dash_clientside = {no_update: "NO_UPDATE", callback_context: {triggered: []}};
window.gcc = {renderers: {test: {
  fresh: s => ({items: [...s.items]}),
  frame: (st, f) => { st.items.push(...(f.changes.item || [])); },
}}};
window.deliver = (event, payload, url) => {
  window.dash_clientside.callback_context.triggered = [{prop_id: "sock.data-" + event}];
  return window.gcc.live.receive("test", event === "snapshot" ? payload : null,
                                 event === "frame" ? payload : null, url || "/live?feed=test&scope=");
};
window.snap = (seq, items, boot) => window.deliver("snapshot", {scope: "", boot: boot || "A", seq: seq, items: items});
window.frame = (seq, item, boot) => window.deliver("frame",
  {scope: "", boot: boot || "A", seq: seq, changes: {item: [item]}});
window.st = () => window.gcc.live.state("test");
"""


@pytest.fixture
def sync(browser):
    page = browser.new_page()
    page.set_content("<html><body></body></html>")
    page.add_script_tag(content=HARNESS)
    page.add_script_tag(content=(REPO_ROOT / "assets" / "live.js").read_text())
    yield page
    page.close()


def test_frames_after_the_snapshot_are_applied_once_in_order(sync):
    sync.evaluate("() => { snap(100, ['s']); frame(101, 'a'); frame(101, 'a'); frame(102, 'b'); frame(100, 'old'); }")
    assert sync.evaluate("() => [st().seq, st().items]") == [102, ["s", "a", "b"]]


def test_a_gap_asks_for_one_resync_however_many_frames_come_before_the_snapshot(sync):
    urls = sync.evaluate("""() => {
        snap(100, []); frame(101, 'a'); frame(102, 'b');
        return [frame(104, 'd'), frame(105, 'e'), frame(106, 'f')];   // 103 was lost
    }""")
    assert urls[0].endswith("&resync=1") and urls[1:] == ["NO_UPDATE", "NO_UPDATE"]
    assert sync.evaluate("() => window.gcc.live.waiting('test')")
    assert sync.evaluate("() => st().items") == ["a", "b"]      # nothing applied while waiting
    # the server's snapshot (built when it had sent 104) arrives after 105 and 106: they are applied
    sync.evaluate("() => snap(104, ['a', 'b', 'c', 'd'])")
    assert sync.evaluate("() => [st().seq, st().items, window.gcc.live.resyncs('test')]") == \
        [106, ["a", "b", "c", "d", "e", "f"], 1]


def test_frames_that_overtake_the_first_snapshot_are_kept_and_applied(sync):
    sync.evaluate("() => { frame(5, 'e'); frame(6, 'f'); snap(4, ['d']); }")
    assert sync.evaluate("() => [st().seq, st().items]") == [6, ["d", "e", "f"]]


def test_frames_of_a_previous_server_start_are_never_replayed(sync):
    sync.evaluate("""() => {
        snap(0, []); frame(1, 'old-1'); frame(2, 'old-2');
        window.gcc.live.disconnected();
        frame(3, 'old-3');                    // still in flight from the old server
        snap(0, ['fresh'], 'B');              // the restarted server: numbers start again
        frame(1, 'new-1', 'B');
    }""")
    assert sync.evaluate("() => [st().boot, st().seq, st().items]") == ["B", 1, ["fresh", "new-1"]]


def test_a_gap_among_the_kept_frames_asks_for_another_resync(sync):
    url = sync.evaluate("""() => {
        snap(10, []); frame(12, 'x');          // gap: resync 1, waiting
        frame(13, 'y'); frame(15, 'z');        // kept; 14 lost too
        return snap(12, ['s']);                // applies 13, then finds 15 after it: gap
    }""")
    assert url.endswith("&resync=2")
    assert sync.evaluate("() => [st().seq, st().items]") == [13, ["s", "y"]]
