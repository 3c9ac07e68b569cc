"""Pure parts of the bench harness: budget, fleet split, device replies, job requests, the timer loop,
the mosquitto config, CPU detection."""

from pathlib import Path

import pytest

from bench.bench_jobs import job_request
from bench.bench_roundtrip import time_calls
from bench.context import Budget, BudgetExhausted
from bench.device_behaviour import device_id, hub_reply, reference_reply, reference_request_topic, reference_rid
from bench.fleet import fleet_parts
from bench.machine import cpu_model
from bench.mosquitto_ref import broker_config
from bench.mqtt_client import rid_of
from emulator.hub.query import parse_condition


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_budget_caps_and_refuses_when_spent():
    clock = FakeClock()
    budget = Budget(60, clock)
    assert budget.cap(90) == 60
    clock.now += 50
    assert budget.remaining() == pytest.approx(10)
    assert budget.cap(5) == 5
    budget.require(10, "x")
    with pytest.raises(BudgetExhausted, match="jobs: skipped"):
        budget.require(11, "jobs")


def test_fleet_parts_cover_every_index_once():
    assert fleet_parts(10000) == [(0, 5000), (5000, 5000)]
    assert fleet_parts(1) == [(0, 1)]
    assert fleet_parts(0) == []
    parts = fleet_parts(12345, per_process=5000)
    covered = [i for start, count in parts for i in range(start, start + count)]
    assert covered == list(range(12345)) and all(count <= 5000 for _, count in parts)


def test_hub_reply_answers_method_requests_only():
    assert hub_reply("$iothub/methods/POST/lockDoor/?$rid=abc-1") == ("$iothub/methods/res/200/?$rid=abc-1",
                                                                      b'{"locked":true}')
    assert hub_reply("$iothub/twin/PATCH/properties/desired/?$version=3") is None
    assert hub_reply("$iothub/methods/POST/lockDoor/") is None


def test_reference_request_and_reply_topics_pair_up():
    topic = reference_request_topic(device_id("dev-", 7), "r1")
    assert topic == "ref/dev-00007/req/r1"
    assert reference_reply(topic, "dev-00007") == ("ref/res/r1/dev-00007", b'{"locked":true}')
    assert reference_reply("ref/all/req/r2", "dev-00003") == ("ref/res/r2/dev-00003", b'{"locked":true}')
    assert reference_rid("ref/res/r2/dev-00003") == "r2"
    assert reference_reply("ref/dev-00007/other/r1", "dev-00007") is None
    assert reference_reply("ref/dev-00007/req/", "dev-00007") is None


def test_rid_of_reads_the_rid_among_other_properties():
    assert rid_of("$iothub/twin/res/204/?$rid=5&$version=2") == "5"
    assert rid_of("$iothub/twin/res/204/?$version=2") is None


@pytest.mark.parametrize("job_type", ["scheduleDeviceMethod", "scheduleUpdateTwin"])
def test_job_request_selects_exactly_the_first_n_bench_devices(job_type):
    body = job_request(job_type, 1000, max_seconds=60)
    condition = parse_condition(body["queryCondition"])
    assert condition.matches({"deviceId": "dev-00999", "tags": {"bench": "fleet", "index": 999}})
    assert not condition.matches({"deviceId": "dev-01000", "tags": {"bench": "fleet", "index": 1000}})
    assert not condition.matches({"deviceId": "myDeviceId", "tags": {}})
    assert body["type"] == job_type and body["maxExecutionTimeInSeconds"] == 60
    assert ("cloudToDeviceMethod" in body) == (job_type == "scheduleDeviceMethod")


def test_time_calls_counts_warmup_apart_and_stops_at_the_time_cap():
    clock = FakeClock()
    calls = []

    def call():
        calls.append(1)
        clock.now += 1.0

    samples, complete = time_calls(call, count=10, warmup=2, time_cap=3.5, clock=clock)
    assert len(calls) == 2 + len(samples)
    assert samples == [1.0] * 4 and not complete
    samples, complete = time_calls(call, count=3, warmup=0, time_cap=100, clock=clock)
    assert samples == [1.0] * 3 and complete


def test_broker_config_binds_only_our_address_with_tls_and_nodelay():
    text = broker_config("127.0.0.42", Path("/c/server.pem"), Path("/c/server-key.pem"), "bench")
    assert "listener 8883 127.0.0.42" in text and "listener 1883 127.0.0.42" in text
    assert "certfile /c/server.pem" in text and "keyfile /c/server-key.pem" in text
    assert "set_tcp_nodelay true" in text and "user bench" in text


def test_cpu_model_from_cpuinfo():
    assert cpu_model("processor\t: 0\nmodel name\t: Example CPU @ 2GHz\n") == "Example CPU @ 2GHz"


def test_without_mosquitto_the_reference_is_skipped_with_the_install_command(monkeypatch, tmp_path):
    from bench import mosquitto_ref
    from bench.context import BenchContext, Sizes
    from bench.report import Results

    monkeypatch.setattr(mosquitto_ref, "find_mosquitto", lambda: None)
    results = Results(machine={}, mode="quick", started_utc="now")
    ctx = BenchContext(results, Budget(60, FakeClock()), Sizes.quick(), tmp_path)
    assert mosquitto_ref.run(ctx) == {}
    [note] = results.notes
    assert note.startswith("mosquitto not installed: reference skipped") and "apt-get install -y mosquitto" in note


def test_find_mosquitto_looks_in_sbin_when_not_on_path(monkeypatch, tmp_path):
    from bench import mosquitto_ref

    binary = tmp_path / "mosquitto"
    binary.write_text("")
    monkeypatch.setattr(mosquitto_ref.shutil, "which", lambda name: None)
    monkeypatch.setattr(mosquitto_ref, "SEARCH_DIRS", (str(tmp_path / "missing"), str(tmp_path)))
    assert mosquitto_ref.find_mosquitto() == str(binary)
    monkeypatch.setattr(mosquitto_ref, "SEARCH_DIRS", ())
    assert mosquitto_ref.find_mosquitto() is None


def test_the_broadcast_reference_counts_each_device_once_and_ignores_other_rids():
    import asyncio

    from bench.mosquitto_ref import Requester
    from mqttcodec import Publish

    class Sent:
        def __init__(self) -> None:
            self.topics: list[str] = []

        def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
            assert qos == 1  # the reference is QoS 1 both ways
            self.topics.append(topic)

    async def scenario() -> tuple[bool, bool, list[str]]:
        requester = Requester()
        requester.client = sent = Sent()  # type: ignore[assignment]
        done = requester.broadcast(expected=2)
        [topic] = sent.topics
        assert topic.startswith("ref/all/req/")
        rid = topic.rsplit("/", 1)[1]
        answer = Publish(f"ref/res/{rid}/dev-00000", b"{}", qos=1, packet_id=1)
        requester._on_publish(None, answer)  # type: ignore[arg-type]
        requester._on_publish(None, answer)  # the same device again (a DUP resend): not a second answer
        requester._on_publish(None, Publish("ref/res/other/dev-00001", b"{}", qos=1, packet_id=2))
        after_duplicates = done.done()
        requester._on_publish(None, Publish(f"ref/res/{rid}/dev-00001", b"{}", qos=1, packet_id=3))
        return after_duplicates, done.done() and done.result() == 2, sent.topics

    after_duplicates, finished, _ = asyncio.run(scenario())
    assert not after_duplicates and finished


@pytest.mark.parametrize("in_memory", [False, True])
def test_bench_emulators_persist_to_sqlite_unless_a_row_says_in_memory(in_memory, monkeypatch, tmp_path):
    from bench import hubs
    from bench.context import BenchContext, Sizes
    from bench.report import Results
    from emulator.loopback import EMULATOR_PORTS

    started: list[list[str]] = []
    checked_ports: list[tuple[int, ...]] = []

    class FakeChild:
        def __init__(self, name: str, argv: list[str], log_dir: Path) -> None:
            started.append(argv)

        def __enter__(self) -> "FakeChild":
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def expect(self, event: str, timeout: float) -> dict:
            return {"host_name": "h", "mqtt_port": 8883, "rest_port": 443, "ca_file": "ca", "cert_file": "c",
                    "key_file": "k", "register_seconds": 0.0}

    def free_address(ports, exclude=()):
        checked_ports.append(tuple(ports))
        return "127.0.0.77"

    monkeypatch.setattr(hubs, "Child", FakeChild)
    monkeypatch.setattr(hubs, "free_loopback_address", free_address)
    ctx = BenchContext(Results(machine={}, mode="quick", started_utc="now"), Budget(60, FakeClock()),
                       Sizes.quick(), tmp_path)
    with hubs.running_hub(ctx, "h", 1, in_memory=in_memory) as hub:
        assert hub.rest_port == 443
    [argv] = started
    assert ("--data-dir" in argv) is not in_memory
    assert "--rest-port" not in argv  # the emulator's own port choice (443, or its fallback)
    assert checked_ports == [tuple(EMULATOR_PORTS)]


def test_the_open_files_row_holds_as_many_connections_as_one_process_may_open(monkeypatch):
    import resource

    from bench import bench_capacity
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 20_000))
    assert bench_capacity.fd_limit_connections() == 19_000  # 20,000 less the emulator's own, in thousands
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 1024))
    assert bench_capacity.fd_limit_connections() == 0  # nothing above the 10,000 row: the row is skipped


async def test_the_sustained_callers_read_one_http_response_at_a_time():
    import asyncio

    from bench.bench_capacity import read_http_response
    reader = asyncio.StreamReader()
    reader.feed_data(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCONTENT-LENGTH: 14\r\n\r\n"
                     b'{"status":200}' b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}")
    assert await read_http_response(reader) == (200, b'{"status":200}')
    assert await read_http_response(reader) == (404, b"{}")  # keep-alive: the next one follows
    reader.feed_data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    with pytest.raises(ValueError, match="without Content-Length"):
        await read_http_response(reader)
