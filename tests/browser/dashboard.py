#!/usr/bin/env python3
"""Real-browser test of the dashboard: Debian's chromium, headless, driven by Playwright.

    python3 tests/browser/dashboard.py target/debug/flowscope [ARTIFACT_DIR]

Simulates an hour of the `three-tier` scenario (with its incidents), ingests it, starts
`flowscope serve` on a port the OS picks, and checks in the browser that the traffic chart
draws data, the tables and findings fill, a drill-down opens, and SQL and Logs Insights queries
typed into the query box show rows (and a bad one its position), and that the page follows
new records without being reloaded: a Firehose delivery made while it is open shows up in its
Sources table and its tiles. Screenshots (laptop and phone
widths) go to ARTIFACT_DIR (default target/artifacts).
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


def canvas_ink(page, selector):
    """Pixels drawn (not transparent) on the chart's canvas."""
    return page.evaluate(
        """(sel) => {
            const c = document.querySelector(sel + ' canvas');
            if (!c) return 0;
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
            return n;
        }""",
        selector,
    )


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
                page = browser.new_page(viewport={"width": 1366, "height": 900})
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
                print(f"dashboard: {state['trafficPoints']} traffic rows, {ink} chart pixels, "
                      f"{state['findings']} findings, "
                      f"{page.locator('#diagnoses tbody tr').count()} diagnoses")

                # Drill down from the top talker.
                page.locator("#talkers a.drill").first.click()
                page.wait_for_selector("#drill-chart canvas", timeout=60_000)
                page.wait_for_selector("#drill-peers tbody tr", timeout=60_000)
                assert page.is_visible("#drill")

                run_query(page, "sql", "SELECT action, count(*) AS n\nFROM flows GROUP BY action ORDER BY n DESC")
                rows = page.locator("#query-result tbody tr")
                assert rows.count() >= 2, rows.count()
                assert "ACCEPT" in page.inner_text("#query-result")
                run_query(page, "insights", "filter action = 'REJECT' | stats count(*) as rejected by dstPort | sort rejected desc | limit 5")
                assert page.locator("#query-result tbody tr").count() >= 1
                assert "rejected" in page.inner_text("#query-result thead")
                run_query(page, "sql", "SELECT start / 300 * 300 AS t, sum(bytes) AS bytes FROM flows GROUP BY 1")
                assert canvas_ink(page, "#query-chart") > 500, "query result chart"
                run_query(page, "sql", "SELECT srcaddr,\n  nosuch FROM flows")
                assert page.is_visible("#query-error")
                err = page.inner_text("#query-error")
                assert "line 2, column 3" in err, err
                page.screenshot(path=os.path.join(artifacts, "dashboard.png"), full_page=True)

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
