"""bench.report: targets, the side-by-side table, the README markdown and the result files."""

import json

from bench.report import Figure, Results, Target, markdown, text_table, write_results


def _results() -> Results:
    results = Results(machine={"cpu_model": "Test CPU", "cpu_count": 2, "ram_gib": 4.0, "os": "Linux 6",
                               "python": "3.11.7", "mosquitto": "2.0.11"},
                      mode="quick", started_utc="2026-01-01 00:00 UTC", duration_s=12.5)
    results.add(Figure("1 round trip", "SDK p50", 4.1, "ms", reference=0.25, target=Target("<=", 5.0, "ms"),
                       vs="mqtt-rr"))
    results.add(Figure("3 capacity", "RSS", 2812.0, "MiB", target=Target("<=", 1024, "MiB")))
    results.add(Figure("4 CLI", "help | pipes", 0.116, "s"))
    results.note("a note with a | pipe")
    results.setup.append("emulator as shipped")
    return results


def test_targets_know_which_way_is_better():
    assert Target("<=", 5.0, "ms").met_by(4.1) is True
    assert Target("<=", 5.0, "ms").met_by(5.1) is False
    assert Target(">=", 10000, "connections").met_by(10000) is True
    assert Target(">=", 10000, "connections").met_by(9999) is False
    assert Target("<=", 5.0, "ms").met_by(None) is None
    assert str(Target("<=", 1024, "MiB")) == "<= 1,024 MiB"


def test_figure_ratio_is_ours_over_the_reference():
    figure = Figure("s", "n", 4.0, "ms", reference=0.5)
    assert figure.ratio == 8.0
    assert Figure("s", "n", 4.0, "ms").ratio is None
    assert Figure("s", "n", None, "ms", reference=1.0, target=Target("<=", 1, "ms")).met is None


def test_text_table_lines_up_ours_reference_ratio_and_target():
    table = text_table(_results().figures).splitlines()
    assert table[0].split() == ["measurement", "ours", "reference", "ratio", "target", "met"]
    assert set(table[1].replace(" ", "")) == {"-"}
    assert "4.10 ms" in table[2] and "0.25 ms" in table[2] and "16.40x" in table[2] and "yes" in table[2]
    assert "2,812 MiB" in table[3] and table[3].rstrip().endswith("NO")
    assert table[2].index("0.25 ms [mqtt-rr]") == table[0].index("reference")  # columns line up


def test_markdown_has_machine_line_table_and_escaped_notes():
    text = markdown(_results())
    assert "Test CPU, 2 cores, 4.0 GiB RAM, Linux 6, Python 3.11.7, mosquitto 2.0.11." in text
    assert "| 1 round trip: SDK p50 | 4.10 ms | 0.25 ms [mqtt-rr] | 16.40x | <= 5.00 ms | yes |" in text
    assert "- [mqtt-rr] mosquitto, MQTT request/response" in text  # every key used is explained once
    assert "- emulator as shipped" in text
    assert "help \\| pipes" in text
    assert "- a note with a \\| pipe" in text


def test_write_results_writes_json_and_markdown(tmp_path):
    json_path, md_path = write_results(_results(), tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert data["mode"] == "quick"
    first = data["figures"][0]
    assert first["target"] == "<= 5.00 ms" and first["met"] is True and first["ratio"] == 16.4
    assert md_path.read_text().startswith("## Performance")
