#!/usr/bin/env python3
"""Real-browser test of the dashboard: Debian's chromium, headless, driven by Playwright.

    python3 tests/browser/dashboard.py target/debug/flowscope [ARTIFACT_DIR]

Simulates an hour of the `three-tier` scenario (with its incidents), ingests it, starts
`flowscope serve` on a port the OS picks, and checks in the browser that the traffic chart
draws data, the tables and findings fill, a drill-down opens, and SQL and Logs Insights queries
typed into the query box show rows (and a bad one its position), and that the page follows
new records without being reloaded: a Firehose delivery made while it is open shows up in its
Sources table and its tiles. The browser runs in a zone that is not UTC (Los Angeles), so the
check that the chart's times are UTC would fail on local times. At 1400 px and at 390 px the
page is never wider than the window and no table is wider than its card; the tiles show the
same units as the CLI's table; findings are drawn on the traffic chart and a drag across it
chooses the time range; Esc closes the drill-down. Screenshots (laptop and phone widths) go to
ARTIFACT_DIR (default target/artifacts).
"""
import base64
import json
import os
import re
import urllib.request
import signal
import subprocess
import sys
import tempfile
import time

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def run(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def start_server(binary, lake):
    proc = subprocess.Popen(
        [binary, "serve", "--lake", lake, "--listen", "127.0.0.1:0", "--no-notify",
         "--detect-interval", "2s", "--flush-interval", "2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"serve exited early (status {proc.poll()})")
        m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        if m:
            return proc, m.group(1)
    raise SystemExit("serve did not print its address")


# Pixels drawn (not transparent) on the canvas of the chart `sel`.
INK_JS = """(sel) => {
    const c = document.querySelector(sel + ' canvas');
    if (!c || !c.width || !c.height) return 0;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
}"""


def canvas_ink(page, selector):
    """Pixels drawn (not transparent) on the chart's canvas."""
    return page.evaluate(INK_JS, selector)


def await_ink(page, selector, pixels, timeout=30_000):
    """Waits until the chart's canvas has more than `pixels` drawn pixels."""
    page.wait_for_function(f"([sel, want]) => ({INK_JS})(sel) > want", arg=[selector, pixels],
                           timeout=timeout)


def cli_figures(binary, lake):
    """The totals as the CLI's table view shows them (`--vertical`: one `name | value` line each)."""
    out = subprocess.run(
        [binary, "sql", "--lake", lake, "--vertical",
         "SELECT count(*) AS records, sum(bytes) AS bytes, sum(packets) AS packets FROM flows"],
        check=True, capture_output=True, text=True).stdout
    figures = {}
    for line in out.splitlines():
        if " | " in line:
            name, value = line.split(" | ", 1)
            figures[name.strip()] = value.strip()
    assert set(figures) == {"records", "bytes", "packets"}, out
    return figures


def layout_problems(page):
    """What sticks out: the page wider than the window, a card's content wider than the card,
    a table not inside a scrolling wrapper that fits its card."""
    return page.evaluate(
        """() => {
            const out = [];
            const w = window.innerWidth;
            if (document.documentElement.scrollWidth > w)
                out.push(`page is ${document.documentElement.scrollWidth} px wide in a ${w} px window`);
            for (const card of document.querySelectorAll('.card, .tile')) {
                if (card.offsetParent === null) continue;
                if (card.scrollWidth > card.clientWidth + 1)
                    out.push(`${card.querySelector('h2') ? card.querySelector('h2').textContent : card.className}: content ${card.scrollWidth} px in a ${card.clientWidth} px card`);
                const r = card.getBoundingClientRect();
                if (r.right > w + 1) out.push(`a card ends at ${r.right} px`);
            }
            for (const t of document.querySelectorAll('table:not(.u-legend)')) {
                if (t.offsetParent === null) continue;
                const wrap = t.closest('.table-wrap');
                const card = t.closest('.card');
                if (!wrap) { out.push('a table outside a scrolling wrapper'); continue; }
                if (wrap.getBoundingClientRect().width > card.clientWidth + 1)
                    out.push(`a table's wrapper is ${wrap.getBoundingClientRect().width} px in a ${card.clientWidth} px card`);
            }
            return out;
        }"""
    )


def tile(page, name):
    return page.evaluate(
        """(name) => {
            for (const t of document.querySelectorAll('#tiles .tile'))
                if (t.querySelector('span').textContent === name) return t.querySelector('b').textContent;
            return null;
        }""",
        name,
    )


def legend_time(page, selector):
    """The time the chart's legend shows with the cursor in the middle of the plot."""
    over = page.locator(f"{selector} .u-over")
    box = over.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    return page.inner_text(f"{selector} .u-legend .u-series:first-child .u-value")


def run_query(page, lang, text):
    page.check(f"input[name=lang][value={lang}]")
    page.fill("#query", text)
    page.evaluate("window.flowscope.queryRows = -2")
    page.click("#run")
    page.wait_for_function(
        "window.flowscope.queryRows !== -2 && document.querySelector('#query-status').textContent !== 'running…'",
        timeout=120_000,
    )


def main():
    binary = os.path.abspath(sys.argv[1])
    artifacts = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else "target/artifacts")
    os.makedirs(artifacts, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        out, lake = os.path.join(tmp, "out"), os.path.join(tmp, "lake")
        run(binary, "simulate", "--scenario", "three-tier", "--duration", "1h", "-q", "--out", out)
        run(binary, "ingest", os.path.join(out, "AWSLogs"), "--lake", lake, "--quiet")
        proc, url = start_server(binary, lake)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                cli = cli_figures(binary, lake)
                page = browser.new_page(viewport={"width": 1400, "height": 900},
                                        timezone_id="America/Los_Angeles")
                errors = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(url)
                page.wait_for_function("window.flowscope && window.flowscope.ready === true", timeout=300_000)
                # The findings are the server's stored ones: the page shows them once the first
                # detection run after start-up has stored them, without a reload.
                page.wait_for_function("window.flowscope.findings > 0 && window.flowscope.ready === true", timeout=300_000)
                state = page.evaluate("window.flowscope")
                assert not state["errors"], state["errors"]
                assert state["trafficPoints"] > 0, state
                ink = canvas_ink(page, "#traffic")
                assert ink > 2000, f"traffic chart drew {ink} pixels"
                assert page.locator("#tiles .tile").count() == 6
                assert page.locator("#talkers tbody tr").count() > 0
                assert page.locator("#rejected-ports tbody tr").count() > 0
                assert state["findings"] > 0, state
                assert page.locator("#findings .finding").count() == state["findings"]
                assert page.locator("#findings .finding.high, #findings .finding.critical").count() > 0
                assert page.locator("#diagnoses tbody tr").count() > 0

                # One unit convention with the CLI: the tiles say what `flowscope sql` says.
                for name, key in [("Records", "records"), ("Bytes", "bytes"), ("Packets", "packets")]:
                    assert tile(page, name) == cli[key], (name, tile(page, name), cli)
                # Times are UTC (the browser's zone is Los Angeles): the legend's time is inside
                # the lake's span as the header gives it in UTC, and the chart says UTC.
                span = page.inner_text("#lake-span")
                lo, hi = re.match(r"(\S+ \S+) – (\S+ \S+) UTC", span).groups()
                shown = legend_time(page, "#traffic")
                assert shown.endswith(" UTC") and lo <= shown[:-4] <= hi, (shown, span)
                assert "UTC" in page.inner_text("#traffic .u-title")
                # Findings are drawn on the chart at their time.
                assert page.evaluate("window.flowscope.markers") > 0, "no finding marker on the chart"
                assert "finding" in page.inner_text("#traffic-marks")
                # Internet noise is folded into one line; no row of the table is an edge refusal.
                edge = page.inner_text("#diagnoses-edge")
                assert "refused at the edge" in edge, edge
                # The fix column wraps instead of being cut.
                assert page.evaluate("getComputedStyle(document.querySelector('#diagnoses td.wrap')).whiteSpace") == "normal"
                # NODATA rows are nobody's top talker.
                assert "-" not in [c.strip() for c in page.locator("#talkers tbody td:first-child").all_inner_texts()]
                # The favicon is served.
                with urllib.request.urlopen(url + "assets/favicon.svg", timeout=30) as r:
                    assert r.headers["Content-Type"].startswith("image/svg+xml")
                problems = layout_problems(page)
                assert not problems, problems
                print(f"dashboard: {state['trafficPoints']} traffic rows, {ink} chart pixels, "
                      f"{state['findings']} findings, "
                      f"{page.locator('#diagnoses tbody tr').count()} diagnoses")

                # Drill down from the top talker.
                page.locator("#talkers a.drill").first.click()
                page.wait_for_selector("#drill-chart canvas", timeout=60_000)
                page.wait_for_selector("#drill-peers tbody tr", timeout=60_000)
                assert page.is_visible("#drill")
                page.screenshot(path=os.path.join(artifacts, "dashboard-drill.png"))
                page.keyboard.press("Escape")
                assert not page.is_visible("#drill"), "Esc did not close the drill-down"

                run_query(page, "sql", "SELECT action, count(*) AS n\nFROM flows GROUP BY action ORDER BY n DESC")
                rows = page.locator("#query-result tbody tr")
                assert rows.count() >= 2, rows.count()
                assert "ACCEPT" in page.inner_text("#query-result")
                run_query(page, "insights", "filter action = 'REJECT' | stats count(*) as rejected by dstPort | sort rejected desc | limit 5")
                assert page.locator("#query-result tbody tr").count() >= 1
                assert "rejected" in page.inner_text("#query-result thead")
                run_query(page, "sql", "SELECT start / 300 * 300 AS t, sum(bytes) AS bytes FROM flows GROUP BY 1")
                assert canvas_ink(page, "#query-chart") > 500, "query result chart"
                # Logs Insights over time draws a chart too, one series per action.
                run_query(page, "insights", "stats sum(bytes) as bytes by bin(5m), action")
                assert page.evaluate("window.flowscope.queryChart") is True
                assert canvas_ink(page, "#query-chart") > 500, "Insights bin(5m) chart"
                assert "ACCEPT" in page.inner_text("#query-chart .u-legend")
                run_query(page, "sql", "SELECT srcaddr,\n  nosuch FROM flows")
                assert page.is_visible("#query-error")
                err = page.inner_text("#query-error")
                assert "line 2, column 3" in err, err
                page.screenshot(path=os.path.join(artifacts, "dashboard.png"), full_page=True)

                # A drag across the traffic chart chooses the time range (as in Grafana).
                before_range = page.evaluate("window.flowscope.range")
                page.locator("#traffic").scroll_into_view_if_needed()
                # A live refresh redraws the chart; a drag made while it does is lost, so the
                # drag is made again (at most three times) until the range follows it.
                for attempt in range(3):
                    page.wait_for_function("window.flowscope.ready === true", timeout=120_000)
                    box = page.locator("#traffic .u-over").bounding_box()
                    y = box["y"] + box["height"] / 2
                    page.mouse.move(box["x"] + box["width"] * 0.25, y)
                    page.mouse.down()
                    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=8)
                    page.mouse.up()
                    try:
                        page.wait_for_function(
                            f"window.flowscope.range[0] !== {before_range[0]} && window.flowscope.ready === true",
                            timeout=30_000)
                        break
                    except Exception:
                        if attempt == 2:
                            raise
                after_range = page.evaluate("window.flowscope.range")
                assert before_range[0] < after_range[0] < after_range[1] < before_range[1], (before_range, after_range)
                assert page.input_value("#range") == "custom"
                page.select_option("#range", "all")
                page.wait_for_function("window.flowscope.ready === true", timeout=120_000)

                # Live: a delivery made while the page is open appears without a reload.
                before = page.evaluate("window.flowscope.refreshes")
                tiles_before = page.inner_text("#tiles")
                # Timestamped at the end of the data, so the range and the charts stay as they were.
                req = urllib.request.Request(url + "api/sql", method="POST",
                                             data=json.dumps({"sql": 'SELECT max("end") FROM flows'}).encode(),
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=30) as r:
                    now = int(json.load(r)["rows"][0][0]) - 30
                lines = "".join(
                    f"2 123456789012 eni-0live 10.9.9.{i} 10.0.0.1 4{i:04d} 443 6 5 {9000 + i} {now} {now + 30} ACCEPT OK\n"
                    for i in range(50))
                body = json.dumps({"requestId": "live-1", "timestamp": now * 1000,
                                   "records": [{"data": base64.b64encode(lines.encode()).decode()}]})
                req = urllib.request.Request(url + "firehose", data=body.encode(), method="POST",
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=30) as r:
                    assert r.status == 200, r.status
                page.wait_for_function(
                    f"window.flowscope.refreshes > {before} && window.flowscope.ready === true"
                    " && 'firehose' in window.flowscope.sources", timeout=60_000)
                page.wait_for_function("document.querySelector('#sources').innerText.includes('firehose')",
                                       timeout=30_000)
                # A refresh started by an earlier update (a detection run) may have read the lake
                # just before the delivery: the next one shows it, still without a reload.
                page.wait_for_function("(before) => document.querySelector('#tiles').innerText !== before",
                                       arg=tiles_before, timeout=60_000)
                assert page.inner_text("#tiles") != tiles_before, "the tiles did not change"
                assert "live" in page.inner_text("#live"), page.inner_text("#live")
                print(f"dashboard: live — a delivery showed up after "
                      f"{page.evaluate('window.flowscope.updates')} updates, no reload")

                # A phone: one column, nothing wider than the screen.
                phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
                phone.goto(url)
                phone.wait_for_function("window.flowscope && window.flowscope.ready === true", timeout=300_000)
                width = phone.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, f"page is {width} px wide on a 390 px phone"
                problems = layout_problems(phone)
                assert not problems, problems
                # A live refresh redraws the chart: its ink is awaited, not read at one instant.
                await_ink(phone, "#traffic", 1000)
                assert canvas_ink(phone, "#traffic") > 1000
                phone.screenshot(path=os.path.join(artifacts, "dashboard-phone.png"), full_page=True)
                assert not errors, errors
                browser.close()
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    print(f"dashboard: browser checks passed; screenshots in {artifacts}")


if __name__ == "__main__":
    main()
