#!/usr/bin/env python3
"""The status page in a real headless browser (Debian's chromium and chromedriver, driven over
the W3C WebDriver protocol by selenium).

Asks the API (with the token) for a managed deployment and, behind it on the same host, a
bare VM; signs in at /login with the token, then waits until the page shows the host, the running job in
its slot, the queued job at its position, and the running job's log growing without a reload
(the page's Server-Sent Events). Saves a screenshot. Prints one JSON object with what it saw;
exit status 1 (and the reason on stderr) when something never appeared.
"""
import argparse
import json
import os
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def browser(chromium, chromedriver):
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1800", "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    # Never let selenium look for or fetch a driver: the Debian one is given.
    os.environ["SE_OFFLINE"] = "true"
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)


def post(url, token, path, values):
    req = urllib.request.Request(
        url + path, method="POST", data=json.dumps({"values": values}).encode(),
        headers={"authorization": "Bearer " + token, "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        if r.status != 202:
            raise SystemExit(f"{path}: {r.status}")
        return json.load(r)["job_id"]


def log_text(d, job):
    panes = d.find_elements(By.CSS_SELECTOR, f'article.log-pane[data-job="{job}"] pre.log')
    return panes[0].text if panes else ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--host", required=True)
    ap.add_argument("--other-host", required=True, help="where the job awaiting approval goes")
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = ap.parse_args()

    seen = {}
    # A slow job for the host's slot (several steps, each logging) and one queued behind it.
    args.running = post(args.url, args.token, "/api/v1/managed-deployments", {
        "vm_name": "web-01", "target_host": args.host, "network": "prod",
        "image_name": "Windows Server 2022", "guest_la_uid": "admin",
        "guest_la_pw": "S3cret-Passw0rd!"})
    args.queued = post(args.url, args.token, "/api/v1/resources/vms", {
        "vm_name": "db-01", "target_host": args.host, "gb_ram": 4, "cpu_cores": 1})
    # A VM big enough for the simulated site's policy to ask for one approval (on another host).
    args.approval = post(args.url, args.token, "/api/v1/resources/vms", {
        "vm_name": "big-01", "target_host": args.other_host, "gb_ram": 64, "cpu_cores": 2})
    seen["jobs"] = {"running": args.running, "queued": args.queued, "approval": args.approval}
    d = browser(args.chromium, args.chromedriver)
    try:
        wait = WebDriverWait(d, args.timeout, poll_frequency=0.2)
        # Not signed in: the page sends the browser to the sign-in form.
        d.get(args.url + "/")
        wait.until(lambda d: d.find_elements(By.ID, "token"))
        seen["redirected_to"] = d.current_url.replace(args.url, "")
        # A wrong token is refused with the form again.
        d.find_element(By.ID, "token").send_keys("not-the-token")
        d.find_element(By.ID, "sign-in").click()
        wait.until(lambda d: d.find_elements(By.ID, "login-error"))
        seen["wrong_token"] = d.find_element(By.ID, "login-error").text
        d.find_element(By.ID, "token").send_keys(args.token)
        d.find_element(By.ID, "sign-in").click()
        wait.until(lambda d: d.find_elements(By.ID, "user"))
        seen["user"] = d.find_element(By.ID, "user").text
        cookie = d.get_cookie("aetherv_session") or {}
        seen["cookie"] = {
            "httpOnly": cookie.get("httpOnly"),
            "sameSite": cookie.get("sameSite"),
            "readable_by_script": d.execute_script("return document.cookie.indexOf('aetherv_session') >= 0"),
        }

        host_css = f'article.host[data-host="{args.host}"]'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, host_css))
        seen["hosts"] = [e.get_attribute("data-host") for e in d.find_elements(By.CSS_SELECTOR, "article.host")]
        seen["host_state"] = d.find_element(By.CSS_SELECTOR, host_css + " h3 .state").text
        seen["free_memory"] = d.find_element(By.CSS_SELECTOR, host_css + " .free-memory").text

        # The running job in the host's slot and the queued one behind it (the page refreshes
        # itself: no reload here).
        running_css = f'{host_css} .running-job[data-job="{args.running}"]'
        queued_css = f'{host_css} .queued-job[data-job="{args.queued}"]'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, running_css))
        seen["running"] = d.find_element(By.CSS_SELECTOR, running_css).text
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, queued_css))
        q = d.find_element(By.CSS_SELECTOR, queued_css)
        seen["queued_position"] = q.get_attribute("data-position")
        seen["queued"] = q.text

        approval_css = f'tr.approval[data-job="{args.approval}"] td.missing'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, approval_css))
        seen["approval_missing"] = d.find_element(By.CSS_SELECTOR, approval_css).text

        # The running job's log grows while the page stays open.
        wait.until(lambda d: log_text(d, args.running).strip())
        first = log_text(d, args.running).splitlines()
        wait.until(lambda d: len(log_text(d, args.running).splitlines()) > len(first))
        later = log_text(d, args.running).splitlines()
        seen["log_lines_first"] = len(first)
        seen["log_lines_later"] = len(later)
        seen["log_sample"] = later[-3:]
        seen["reloaded"] = d.execute_script("return performance.getEntriesByType('navigation')[0].type")

        seen["password_on_page"] = "S3cret-Passw0rd!" in d.page_source
        os.makedirs(os.path.dirname(os.path.abspath(args.screenshot)), exist_ok=True)
        d.save_screenshot(args.screenshot)
        seen["screenshot"] = args.screenshot
    except (TimeoutException, WebDriverException) as e:
        seen["error"] = type(e).__name__
        try:
            os.makedirs(os.path.dirname(os.path.abspath(args.screenshot)), exist_ok=True)
            d.save_screenshot(args.screenshot)
            seen["page"] = d.page_source[:4000]
        except WebDriverException:
            pass
        print(json.dumps(seen))
        print(f"the page never showed what was expected: {seen}", file=sys.stderr)
        return 1
    finally:
        d.quit()
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
