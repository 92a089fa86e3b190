"""The viewer on a daemon whose frames between key frames are answered by motion: Debian's Chromium through
Playwright, a real daemon (a model slower than its camera) and a real viewer, on loopback."""

from __future__ import annotations

import re

import pytest

from tests.daemon_helpers import present_checkpoint, start_daemon
from tests.test_viewer import ARTIFACTS, WAIT_MS, canvas_point
from tests.viewer_helpers import ViewerProcess, chromium

pytestmark = pytest.mark.slow  # a real browser and daemon


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    weights = present_checkpoint(tmp_path_factory.mktemp("weights") / "present.pt")
    d = start_daemon("--preview-every", "1", "--checkpoint", str(weights), "--precision", "fp32", motion=True,
                     image_size=256, source="test:?pattern=ball&width=160&height=120&fps=15")
    v = ViewerProcess(d.results, d.commands)
    try:
        with chromium() as browser:
            pg = browser.new_page(viewport={"width": 1000, "height": 560})
            pg.errors = []
            pg.on("pageerror", lambda e: pg.errors.append(str(e)))
            pg.goto(v.url)
            pg.wait_for_selector("#state[data-state=live]", timeout=WAIT_MS)
            yield pg
            assert pg.errors == [], f"JavaScript errors in the page: {pg.errors}"
    finally:
        assert v.stop() == 0
        d.stop()


PAINTED = """(source) => {
    const r = [...results.values()].reverse().find((x) => x.header.source === source && x.header.objects.length);
    if (!r) return null;
    const d = r.overlay.getContext('2d').getImageData(0, 0, r.overlay.width, r.overlay.height).data;
    let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0;
    return [n, r.header.objects.reduce((s, o) => s + o.area, 0)];
}"""


def test_masks_moved_by_motion_are_drawn_unlike_the_models(page):
    x, y = canvas_point(page, 0.5, 0.5)
    page.mouse.click(x, y)
    page.wait_for_selector('#objects li[data-id="1"]', timeout=WAIT_MS)
    # both kinds arrive: a model mask is painted whole, a moved one striped (every few pixels left clear)
    page.wait_for_function("() => [...results.values()].some((r) => r.header.source === 'motion' && "
                           "r.header.objects.length)", timeout=WAIT_MS)
    page.wait_for_function("() => [...results.values()].some((r) => r.header.source === 'model' && "
                           "r.header.objects.length)", timeout=WAIT_MS)
    model, moved = page.evaluate(PAINTED, "model"), page.evaluate(PAINTED, "motion")
    assert model[0] == model[1] > 0
    assert 0.7 * moved[1] < moved[0] < 0.95 * moved[1]
    # the frame on screen says where its masks come from, and both rates show
    page.wait_for_function("() => /moved from \\d+/.test(document.getElementById('frame-source').textContent)",
                           timeout=WAIT_MS)
    assert page.inner_text("#frame").isdigit()  # the frame's number alone, as pages and tools read it
    shown = float(page.inner_text("#fps"))
    key = page.inner_text("#model-fps")
    assert re.fullmatch(r"\d+(\.\d{1,2})?", key) and 0 < float(key) < shown
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-motion.png"))
