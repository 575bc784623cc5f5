"""bench.attention's rounds (CPU: the timing function is replaced by a recorder)."""

import pytest

from bench import attention as bench


def _recorder(monkeypatch, readings):
    """Replace time_one: each call logs the provider and returns its next reading (ms), or
    raises where the reading is an exception."""
    calls = []

    def time_one(fn, shape, causal, backward):
        calls.append(fn)
        value = readings[fn].pop(0)
        if isinstance(value, Exception):
            raise value
        return value

    monkeypatch.setattr(bench, "time_one", time_one)
    return calls


def test_rounds_rotate_the_order_and_keep_the_median(monkeypatch):
    provs = {"a": "a", "b": "b", "c": "c"}
    calls = _recorder(monkeypatch, {"a": [1.0, 5.0, 2.0], "b": [4.0, 4.0, 3.0], "c": [9.0] * 3})
    rows = bench.time_cell(provs, [], (1, 1, 8, 16), False, False, rounds=3)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert [r["ms"] for r in rows] == [2.0, 4.0, 9.0]
    assert rows[0]["ms_rounds"] == [1.0, 5.0, 2.0]
    assert rows[0]["tflops"] == pytest.approx(4 * 8 * 8 * 16 / 2.0 / 1e9)


def test_a_failing_provider_is_recorded_and_not_retried(monkeypatch):
    provs = {"a": "a", "b": "b"}
    calls = _recorder(monkeypatch, {"a": [RuntimeError("no kernel")], "b": [1.0, 3.0]})
    rows = bench.time_cell(provs, [], (1, 1, 8, 16), True, True, rounds=2)
    assert calls == ["a", "b", "b"]
    assert rows[0]["ms"] is None and rows[0]["error"] == "RuntimeError: no kernel"
    assert rows[1]["ms"] == 2.0 and rows[1]["direction"] == "bwd" and rows[1]["causal"]


def test_one_round_is_one_reading_each(monkeypatch):
    calls = _recorder(monkeypatch, {"a": [2.0], "b": [3.0]})
    rows = bench.time_cell({"a": "a", "b": "b"}, [], (1, 1, 8, 16), False, False, rounds=1)
    assert calls == ["a", "b"] and "ms_rounds" not in rows[0]


def test_zero_rounds_is_refused():
    with pytest.raises(SystemExit):
        bench.main(["--rounds", "0"])
