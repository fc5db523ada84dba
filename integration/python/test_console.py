"""The web console the controllers serve at `/` (issue #17, docs/console.md), against a live cluster of
3 controllers and 3 brokers started by `chronikctl local up`.

- The JSON APIs, asked directly on every controller: a topic produced to by confluent-kafka shows a
  high watermark per partition equal to the records produced and a size; the message browser returns
  the latest records with their keys, values and headers; a consumer group shows its member, its
  assignment and its lag, which grows with unread records and drops to 0 when the consumer catches up,
  and its lag history (sampled every second here) holds both; `/api/v1/events` streams the metadata.
- Headless Chromium (Debian's `chromium`) loads every page after its JavaScript ran (`--dump-dom`
  with a virtual time budget) and the test asserts on the rendered DOM; a screenshot of each page is
  saved in the test's temp dir. Skipped, saying so, only when chromium is not installed.
- A broker killed with kill -9: the event stream carries the fencing, and the overview page shows the
  broker fenced with no leaderships, and the topic page shows the leaders moved, within seconds.
- With `--admin-token-file`, the pages redirect to `/login` and the APIs answer 401 without the token;
  `Authorization: Bearer` works, and so does the HttpOnly cookie the login form sets. On a cluster of
  `local up --security sasl_ssl` the console is HTTPS (the cookie `Secure`) and reads the SASL_SSL
  brokers with `--console-kafka-config`.
"""

from __future__ import annotations

import base64
import fcntl
import html.parser
import http.cookiejar
import json
import os
import select
import shutil
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from chronik_cluster import (RF1_CONTROLLER_ARGS, ChronikCluster, down_in, log_tails_in, parse_json_output,
                            run_chronikctl, wait_until)
from clients import Rec, ck_consumer, ck_poll, ck_produce, unique_group

SAMPLE_ARGS = ["--console-sample-interval-ms=1000"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# ----- HTTP -----

def controllers(cluster: ChronikCluster) -> list[dict]:
    return [n for n in cluster.doc["nodes"] if n["kind"] == "controller"]


def base_url(cluster: ChronikCluster, index: int = 0) -> str:
    return f"http://{controllers(cluster)[index]['http_addr']}"


def get_json(url: str, headers: dict | None = None, timeout: float = 15) -> dict:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        assert response.headers["Content-Type"].startswith("application/json"), response.headers
        return json.loads(response.read())


def status_of(url: str, headers: dict | None = None, opener=None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with (opener or urllib.request.build_opener(NoRedirect)).open(request, timeout=15) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def read_events(url: str, count: int, timeout: float, headers: dict | None = None,
                until=None) -> list[tuple[str, dict]]:
    """Reads server-sent events from `url`: `count` of them, or until `until(event, data)` is true."""
    request = urllib.request.Request(url, headers={"Accept": "text/event-stream", **(headers or {})})
    events: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout
    with urllib.request.urlopen(request, timeout=timeout) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream"), response.headers
        name, data = None, []
        while time.monotonic() < deadline:
            line = response.readline().decode().rstrip("\n")
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                events.append((name, json.loads("\n".join(data))))
                if (until and until(*events[-1])) or (not until and len(events) >= count):
                    return events
                name, data = None, []
    raise AssertionError(f"event stream {url}: {len(events)} events in {timeout}s, last: {events[-3:]}")


# ----- Chromium -----

class Dom(html.parser.HTMLParser):
    """The elements of a dumped DOM with their attributes and text, enough for the assertions here."""

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[dict] = []
        self._open: list[dict] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.elements.append(element)
        if tag not in ("meta", "link", "input", "br", "img", "polyline", "line"):
            self._open.append(element)

    def handle_endtag(self, tag):
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i]["tag"] == tag:
                del self._open[i:]
                break

    def handle_data(self, data):
        for element in self._open:
            element["text"] += data

    def find(self, tag: str | None = None, **attrs) -> list[dict]:
        return [e for e in self.elements if (tag is None or e["tag"] == tag)
                and all(e["attrs"].get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def body(self) -> dict:
        return self.find("body")[0]["attrs"]


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON
    messages separated by NUL bytes, commands on the child's fd 3, answers and events on its fd 4), so
    one page stays open while the cluster changes and the test reads its DOM as the page redraws it."""

    def __init__(self, profile: Path, width: int = 1400, height: int = 900):
        commands_read, self._commands = os.pipe()
        self._answers, answers_write = os.pipe()

        def child_fds():
            # Out of the way first: a pipe end may itself be fd 3 or 4.
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_read, answers_write)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self._process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--hide-scrollbars", "--remote-debugging-pipe", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # Python's own descriptors close on exec anyway; only the dup2'ed 3 and 4 are inherited.
            preexec_fn=child_fds, close_fds=False)
        os.close(commands_read)
        os.close(answers_write)
        self._buffer = b""
        self._next_id = 0
        self._session = None
        try:
            target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            self._session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            self.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        except BaseException:
            self.close()
            raise

    def call(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if self._session:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buffer:
                left = deadline - time.monotonic()
                ready, _, _ = select.select([self._answers], [], [], max(0.0, left))
                if not ready:
                    raise AssertionError(f"chromium did not answer {method} in {timeout}s")
                chunk = os.read(self._answers, 1 << 20)
                if not chunk:
                    raise AssertionError(f"chromium exited during {method}")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self._next_id:  # events (no id) are not needed here
                if "error" in answer:
                    raise AssertionError(f"chromium {method}: {answer['error']}")
                return answer["result"]

    def goto(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})

    def dom(self) -> Dom:
        result = self.call("Runtime.evaluate", {"expression": "document.documentElement.outerHTML",
                                                "returnByValue": True})
        return Dom(result["result"]["value"])

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        assert path.stat().st_size > 10_000, f"a screenshot of {path.stat().st_size} bytes"

    def close(self) -> None:
        self._process.kill()
        self._process.wait(timeout=30)
        os.close(self._commands)
        os.close(self._answers)


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian package `chromium`); the console's browser tests "
                    "are skipped")
    opened = Browser(tmp_path / "chromium-profile")
    try:
        yield opened
    finally:
        opened.close()


def rendered(browser: Browser, view: str, condition, what: str, timeout: float = 30) -> Dom:
    """Until the page shows `view`, rendered, and `condition(dom)` holds; returns that DOM. A timeout
    names what the page last showed."""
    last = {}

    def look():
        dom = browser.dom()
        last["text"] = " ".join(" ".join(e["text"].split()) for e in dom.find("main"))[:1500]
        body = dom.body()
        errors = dom.find(id="view-error")
        assert not errors, f"the page rendered an error: {errors[0]['text']}"
        return dom if body.get("data-view") == view and body.get("data-ready") == "1" and condition(dom) else None
    try:
        return wait_until(look, timeout, what, interval=0.2)
    except AssertionError as error:
        raise AssertionError(f"{error}\nthe page showed: {last.get('text')}") from None




# ----- the cluster -----

@pytest.fixture(scope="module")
def cluster(module_cluster_factory) -> ChronikCluster:
    return module_cluster_factory(controllers=3, brokers=3, controller_args=RF1_CONTROLLER_ARGS + SAMPLE_ARGS)


def produce_keyed(cluster: ChronikCluster, topic: str, partitions: int, per_partition: int) -> list[Rec]:
    records = [Rec(key=f"key-{p}-{i}".encode(),
                   value=json.dumps({"partition": p, "seq": i, "note": "hello"}).encode(),
                   headers=[("source", b"test_console"), ("seq", str(i).encode())], partition=p)
               for p in range(partitions) for i in range(per_partition)]
    ck_produce(cluster.bootstrap_servers, topic, records)
    return records


# ----- the JSON APIs -----

def test_overview_api_on_every_controller(cluster):
    def caught_up(index: int) -> dict:
        overview = get_json(f"{base_url(cluster, index)}/api/v1/overview")
        assert overview["cluster_id"]
        roles = sorted(c["role"] for c in overview["controllers"])
        assert len(roles) == 3 and roles.count("leader") == 1, roles
        me = [c for c in overview["controllers"] if c["is_self"]]
        assert len(me) == 1 and me[0]["term"] >= 1 and me[0]["lag"] is not None, me
        assert sorted(b["broker_id"] for b in overview["brokers"]) == [1, 2, 3]
        assert all(b["state"] == "unfenced" for b in overview["brokers"]), overview["brokers"]
        assert overview["leaderless_partitions"] == 0
        return overview

    # A follower shows the log as far as it has applied it, which right after the cluster starts
    # can be nothing for half a second (openraft backs off from a peer that was not listening yet
    # when the leader first tried it): each controller is read until it has caught up.
    for index in range(3):
        wait_until(lambda: caught_up(index), 20, f"controller {index + 1}'s overview")
    # The sampler's disk usage arrives within a few intervals.
    wait_until(lambda: all(b["disk"] and b["disk"]["total_bytes"]
                           for b in get_json(f"{base_url(cluster)}/api/v1/overview")["brokers"]),
               20, "every broker's disk usage in the overview")


def test_topic_high_watermarks_sizes_and_configs(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=3, replication_factor=3,
                         configs={"retention.ms": "3600000"})
    produce_keyed(cluster, topic_name, 3, 25)
    for index in range(3):
        topic = get_json(f"{base_url(cluster, index)}/api/v1/topics/{topic_name}")
        assert [p["high_watermark"] for p in topic["partitions"]] == [25, 25, 25], topic
        assert all(p["log_start_offset"] == 0 and p["size_bytes"] > 25 * 40 for p in topic["partitions"]), topic
        assert all(sorted(p["isr"]) == [1, 2, 3] and p["leader"] in (1, 2, 3) for p in topic["partitions"])
        assert topic["configs"] == {"retention.ms": "3600000"}
        assert topic["replication_factor"] == 3 and topic["errors"] == []
    listed = wait_until(lambda: [t for t in get_json(f"{base_url(cluster)}/api/v1/topics")["topics"]
                                 if t["name"] == topic_name and t["size_bytes"]], 20,
                        "the topic with a sampled size in the topic list")
    assert listed[0]["partitions"] == 3 and listed[0]["under_replicated"] == 0
    missing = status_of(f"{base_url(cluster)}/api/v1/topics/no-such-topic-{topic_name}")
    assert missing == 404


def test_message_browser_shows_the_latest_records(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=2, replication_factor=3)
    produce_keyed(cluster, topic_name, 2, 30)
    url = f"{base_url(cluster, 1)}/api/v1/topics/{topic_name}/partitions/1/records"
    latest = get_json(f"{url}?limit=5")
    assert latest["high_watermark"] == 30 and latest["log_start_offset"] == 0
    assert [r["offset"] for r in latest["records"]] == [25, 26, 27, 28, 29]
    last = latest["records"][-1]
    assert last["key"] == {"text": "key-1-29"}
    assert json.loads(last["value"]["text"]) == {"partition": 1, "seq": 29, "note": "hello"}
    assert last["headers"] == [{"key": "source", "value": {"text": "test_console"}},
                               {"key": "seq", "value": {"text": "29"}}]
    everything = get_json(f"{url}?limit=500")
    assert [r["offset"] for r in everything["records"]] == list(range(30))
    assert get_json(url)["records"][0]["offset"] == 10, "20 records by default"
    # Binary keys come back in base64.
    ck_produce(cluster.bootstrap_servers, topic_name, [Rec(key=b"\xff\x00", value=None, partition=1)])
    binary = get_json(f"{url}?limit=1")["records"][0]
    assert binary["key"] == {"base64": "/wA="} and binary["value"] is None
    assert status_of(f"{url}?limit=0") == 400
    assert status_of(f"{base_url(cluster)}/api/v1/topics/{topic_name}/partitions/7/records") == 404


def group_view(cluster: ChronikCluster, group: str, index: int = 0) -> dict:
    return get_json(f"{base_url(cluster, index)}/api/v1/groups/{urllib.parse.quote(group)}")


def lags(view: dict, topic: str) -> dict[int, int]:
    return {p["partition"]: p["lag"] for p in view["partitions"] if p["topic"] == topic}


def test_group_members_lag_and_history(cluster, topic_name):
    cluster.create_topic(topic_name, partitions=2, replication_factor=3)
    produce_keyed(cluster, topic_name, 2, 20)
    group = unique_group()
    consumer = ck_consumer(cluster.bootstrap_servers, {"group.id": group, "auto.offset.reset": "earliest",
                                                         "enable.auto.offset.store": True,
                                                         "client.id": "console-test"})
    try:
        consumer.subscribe([topic_name])
        ck_poll(consumer, 40, 60, "group consumer, first 40")
        consumer.commit(asynchronous=False)
        def stable_and_caught_up():
            view = group_view(cluster, group)
            return view if view["state"] == "Stable" and lags(view, topic_name) == {0: 0, 1: 0} else None
        view = wait_until(stable_and_caught_up, 20, "the group stable with lag 0")
        assert len(view["members"]) == 1 and view["members"][0]["client_id"] == "console-test"
        assert view["members"][0]["assignment"] == [{"topic": topic_name, "partitions": [0, 1]}]
        assert {p["member_id"] for p in view["partitions"]} == {view["members"][0]["member_id"]}
        listed = get_json(f"{base_url(cluster, 2)}/api/v1/groups")["groups"]
        assert [g["state"] for g in listed if g["group_id"] == group] == ["Stable"], listed

        produce_keyed(cluster, topic_name, 1, 15)
        wait_until(lambda: lags(group_view(cluster, group, 1), topic_name) == {0: 15, 1: 0}, 20,
                   "the lag on partition 0 to show the 15 unread records")
        wait_until(lambda: any(p["lag"] == 15 for s in group_view(cluster, group)["history"]
                               if s["topic"] == topic_name and s["partition"] == 0 for p in s["points"]),
                   20, "the sampled history to hold the lag of 15")

        ck_poll(consumer, 15, 60, "group consumer, 15 more")
        consumer.commit(asynchronous=False)
        wait_until(lambda: lags(group_view(cluster, group, 2), topic_name) == {0: 0, 1: 0}, 20,
                   "the lag to drop to 0 once the consumer caught up")

        def history_back_to_zero():
            series = [s for s in group_view(cluster, group)["history"]
                      if s["topic"] == topic_name and s["partition"] == 0][0]
            lag_values = [p["lag"] for p in series["points"]]
            times = [p["at_ms"] for p in series["points"]]
            assert times == sorted(times)
            return 15 in lag_values and lag_values[-1] == 0 and lag_values.index(15) < len(lag_values) - 1
        wait_until(history_back_to_zero, 20, "the sampled history to go from 15 back to 0")
        total = wait_until(lambda: [g["total_lag"] for g in get_json(f"{base_url(cluster)}/api/v1/groups")["groups"]
                                    if g["group_id"] == group and g["total_lag"] == 0], 20,
                           "the group's sampled total lag of 0 in the group list")
        assert total == [0]
    finally:
        consumer.close()
    assert status_of(f"{base_url(cluster)}/api/v1/groups/no-such-group-{group}") == 404


def test_events_stream_starts_with_the_overview(cluster, topic_name):
    events = read_events(f"{base_url(cluster, 2)}/api/v1/events", 1, 15)
    name, data = events[0]
    assert name == "metadata" and data["cluster_id"] and len(data["brokers"]) == 3
    # A topic created now shows up as a metadata event; a sample event follows within its interval.
    seen = {}

    def watch(name, data):
        seen[name] = True
        if name == "metadata" and data["topic_count"] > events[0][1]["topic_count"] and not seen.get("created"):
            seen["created"] = True
        return seen.get("created") and seen.get("sample")

    threading.Timer(1.0, lambda: cluster.create_topic(topic_name, partitions=1, wait=False)).start()
    read_events(f"{base_url(cluster, 2)}/api/v1/events", 0, 30, until=watch)


# ----- the pages in Chromium -----

def test_every_page_renders_in_chromium(cluster, topic_name, tmp_path, browser):
    cluster.create_topic(topic_name, partitions=2, replication_factor=3)
    produce_keyed(cluster, topic_name, 2, 12)
    group = unique_group()
    consumer = ck_consumer(cluster.bootstrap_servers, {"group.id": group, "auto.offset.reset": "earliest",
                                                         "enable.auto.offset.store": True})
    try:
        consumer.subscribe([topic_name])
        ck_poll(consumer, 24, 60, "group consumer")
        consumer.commit(asynchronous=False)
        produce_keyed(cluster, topic_name, 1, 5)  # some lag to draw
        wait_until(lambda: len([p for s in group_view(cluster, group)["history"] for p in s["points"]]) >= 4,
                   30, "a few lag samples")
        base = base_url(cluster)
        pages = {
            "overview": (f"{base}/#/", "overview",
                         lambda d: len(d.find("tr", data_state="unfenced")) == 3 and d.find(id="controllers")
                         and len(d.find("tr", data_role="leader")) == 1),
            "topics": (f"{base}/#/topics", "topics", lambda d: d.find("tr", data_topic=topic_name)),
            "topic": (f"{base}/#/topics/{topic_name}", "topic",
                      lambda d: [e["attrs"]["data-high-watermark"] for e in d.find("tr")
                                 if "data-partition" in e["attrs"]] == ["17", "12"]),
            "records": (f"{base}/#/topics/{topic_name}/1/records?limit=3", "records",
                        lambda d: [e["attrs"]["data-offset"] for e in d.find("tr") if "data-offset" in e["attrs"]]
                        == ["9", "10", "11"]),
            "groups": (f"{base}/#/groups", "groups", lambda d: d.find("tr", data_group=group)),
            "group": (f"{base}/#/groups/{group}", "group",
                      lambda d: d.find("svg", id="lag-graph") and d.find("polyline")
                      and d.find("tr", data_topic=topic_name, data_partition="0", data_lag="5")),
        }
        for name, (url, view, condition) in pages.items():
            browser.goto(url)
            dom = rendered(browser, view, condition, f"the {name} page rendered in chromium")
            if name == "records":
                text = " ".join(e["text"] for e in dom.find("td") if e["attrs"].get("class") == "value")
                assert '"seq": 11' in text and '\n  "note"' in text, f"pretty-printed JSON values: {text[:300]}"
                keys = [e["text"] for e in dom.find("td") if e["attrs"].get("class") == "key"]
                assert keys == ["key-1-9", "key-1-10", "key-1-11"], keys
            browser.screenshot(tmp_path / f"console-{name}.png")
        live = browser.dom().find(id="live")[0]
        assert "on" in live["attrs"]["class"].split(), f"the event stream is open: {live}"
        print(f"screenshots in {tmp_path}")
    finally:
        consumer.close()


def test_a_killed_broker_shows_fenced_and_its_leaders_move(cluster_factory, topic_name, tmp_path, browser):
    cluster = cluster_factory(controllers=3, brokers=3, controller_args=RF1_CONTROLLER_ARGS + SAMPLE_ARGS)
    cluster.create_topic(topic_name, partitions=6, replication_factor=3)
    led_by_2 = [p for p, leader in cluster.leaders(topic_name).items() if leader == 2]
    assert led_by_2, "broker 2 leads some partitions (preferred leaders are spread)"
    base = base_url(cluster, 1)

    # The page is loaded once and not reloaded: what changes on it comes through /api/v1/events.
    browser.goto(f"{base}/#/")
    rendered(browser, "overview", lambda d: d.find("tr", data_broker="2", data_state="unfenced")
             and d.find(id="live", **{"class": "live on"}), "broker 2 unfenced, the event stream open")
    killed_at = time.monotonic()
    cluster.kill_broker(2)
    dom = rendered(browser, "overview",
                   lambda d: d.find("tr", data_broker="2", data_state="fenced", data_leaders="0"),
                   "the open overview to show broker 2 fenced with no leaderships", timeout=10)
    shown_after = time.monotonic() - killed_at
    assert len(dom.find("tr", data_state="unfenced")) == 2
    leaders = {int(e["attrs"]["data-broker"]): int(e["attrs"]["data-leaders"]) for e in dom.find("tr")
               if "data-broker" in e["attrs"]}
    assert leaders[1] + leaders[3] >= 6, f"the leaderships moved to brokers 1 and 3: {leaders}"
    browser.screenshot(tmp_path / "console-broker-killed.png")

    # The events themselves, read directly.
    events = read_events(f"{base}/api/v1/events", 1, 15)
    assert [b["state"] for b in events[0][1]["brokers"] if b["broker_id"] == 2] == ["fenced"]

    browser.goto(f"{base}/#/topics/{topic_name}")
    rendered(browser, "topic", lambda d: all(e["attrs"]["data-leader"] in ("1", "3") for e in d.find("tr")
                                             if "data-partition" in e["attrs"]),
             "every leader on brokers 1 and 3", timeout=10)
    print(f"the open page showed the fencing {shown_after:.1f}s after the kill")
    assert shown_after < 10


# ----- authentication -----

def test_admin_token_guards_the_console(cluster_factory, tmp_path, monkeypatch):
    admin, cluster_token = tmp_path / "admin.token", tmp_path / "cluster.token"
    admin.write_text("admin-token-" + os.urandom(12).hex() + "\n")
    cluster_token.write_text("cluster-token-" + os.urandom(12).hex() + "\n")
    monkeypatch.setenv("CHRONIK_ADMIN_TOKEN_FILE", str(admin))
    cluster = cluster_factory(
        controllers=1, brokers=1,
        controller_args=RF1_CONTROLLER_ARGS + [f"--admin-token-file={admin}", f"--cluster-token-file={cluster_token}"],
        broker_args=[f"--controller-token-file={cluster_token}"])
    base = base_url(cluster)
    token = admin.read_text().strip()
    assert status_of(f"{base}/") == 303
    assert status_of(f"{base}/api/v1/overview") == 401
    assert status_of(f"{base}/api/v1/events") == 401
    assert status_of(f"{base}/api/v1/overview", {"Authorization": "Bearer wrong-token-0123456789"}) == 401
    assert status_of(f"{base}/login") == 200
    assert status_of(f"{base}/healthz") == 200, "probes stay open"
    assert get_json(f"{base}/api/v1/overview", {"Authorization": f"Bearer {token}"})["brokers"]

    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    wrong = urllib.parse.urlencode({"token": "not-the-token-0123456789"}).encode()
    assert status_of_post(browser, f"{base}/login", wrong) == 401
    assert not list(jar)
    assert status_of_post(browser, f"{base}/login", urllib.parse.urlencode({"token": token}).encode()) == 303
    cookies = list(jar)
    assert [c.name for c in cookies] == ["chronik_console"]
    assert cookies[0].has_nonstandard_attr("HttpOnly")
    assert status_of(f"{base}/", opener=browser) == 200
    assert status_of(f"{base}/api/v1/overview", opener=browser) == 200
    assert status_of_post(browser, f"{base}/logout", b"") == 303
    assert status_of(f"{base}/api/v1/overview", opener=browser) == 401

    if CHROMIUM:
        browser = Browser(tmp_path / "chromium-profile")
        try:
            browser.goto(f"{base}/")
            wait_until(lambda: browser.dom().find("form", id="login-form"), 15,
                       "an unauthenticated browser to land on the login form")
        finally:
            browser.close()


def status_of_post(opener, url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with opener.open(request, timeout=15) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_secured_cluster_console_over_https_and_sasl_ssl(tmp_path_factory, tmp_path, monkeypatch):
    """`local up --security sasl_ssl`: the controllers serve HTTPS and want the admin token, the brokers
    only take SASL_SSL. The console reads them with `--console-kafka-config` set to the very
    `client.properties` that `local up` writes (before any node starts) for the admin user."""
    directory = tmp_path_factory.mktemp("cluster-console-secured-")
    args = ["local", "up", "--security", "sasl_ssl", "--controllers", "1", "--brokers", "1",
            "--dir", str(directory), "--output", "json",
            f"--controller-arg=--console-kafka-config={directory / 'client.properties'}"]
    try:
        try:
            doc = parse_json_output(run_chronikctl(args, 120))
        except BaseException as error:
            raise AssertionError(f"secured cluster did not come up: {error}\n{log_tails_in(directory)}") from None
        cluster = ChronikCluster(directory.name, directory, doc)
        control_plane = doc["control_plane"]
        monkeypatch.setenv("CHRONIK_CONTROLLER_TLS_CA", control_plane["controller_tls_ca"])
        monkeypatch.setenv("CHRONIK_ADMIN_TOKEN_FILE", control_plane["admin_token_file"])
        wait_until(lambda: cluster.ctl_json("cluster", "status").get("cluster_id"), 30,
                   "the controller quorum to bootstrap")
        tls = ssl.create_default_context(cafile=control_plane["controller_tls_ca"])
        https = urllib.request.build_opener(urllib.request.HTTPSHandler(context=tls), NoRedirect)
        base = f"https://{controllers(cluster)[0]['http_addr']}"
        token = Path(control_plane["admin_token_file"]).read_text().strip()
        bearer = {"Authorization": f"Bearer {token}"}

        def api(path: str) -> dict:
            request = urllib.request.Request(f"{base}{path}", headers=bearer)
            with https.open(request, timeout=15) as response:
                return json.loads(response.read())

        assert status_of(f"{base}/api/v1/overview", opener=https) == 401
        properties = {}
        for line in Path(doc["client_properties"]).read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, value = line.split("=", 1)
                properties[key.strip()] = value.strip()
        assert properties["security.protocol"] == "SASL_SSL"
        topic = f"secured-console-{os.urandom(4).hex()}"
        cluster.create_topic(topic, partitions=1, replication_factor=1, wait=False)
        wait_until(lambda: [p["leader"] for p in cluster.describe_topic(topic)["partitions"]] == [1], 30,
                   "the topic led")
        records = [Rec(key=f"k{i}".encode(), value=f"v{i}".encode(), partition=0) for i in range(12)]
        ck_produce(properties["bootstrap.servers"], topic, records,
                   config={k: v for k, v in properties.items() if k != "bootstrap.servers"})
        hw = wait_until(lambda: api(f"/api/v1/topics/{topic}")["partitions"][0]["high_watermark"] == 12, 20,
                        "the console to read the high watermark over SASL_SSL")
        assert hw
        latest = api(f"/api/v1/topics/{topic}/partitions/0/records?limit=2")["records"]
        assert [(r["key"]["text"], r["value"]["text"]) for r in latest] == [("k10", "v10"), ("k11", "v11")]

        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPSHandler(context=tls),
                                              urllib.request.HTTPCookieProcessor(jar), NoRedirect)
        assert status_of_post(browser, f"{base}/login", urllib.parse.urlencode({"token": token}).encode()) == 303
        cookie = [c for c in jar if c.name == "chronik_console"][0]
        assert cookie.secure, "the cookie is Secure over HTTPS"
        assert status_of(f"{base}/api/v1/overview", opener=browser) == 200
    finally:
        down_in(directory)
