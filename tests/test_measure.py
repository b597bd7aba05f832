import pandas as pd
import pytest

from mtt_helpers.measure import compare, fastest_times, markdown_table, peak_memory_mb


class FakeClock:
    """Time advances only when a timed function says how long it 'took'."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_fastest_times_keeps_the_fastest_try_per_call_and_rotates_the_order():
    clock, log = FakeClock(), []
    durations = {"a": iter([9.0, 5.0, 1.0, 7.0, 2.0, 8.0, 3.0]), "b": iter([9.0, 4.0, 6.0, 2.0, 3.0, 1.0, 5.0])}

    def make(name):
        def run(call):
            log.append((name, call))
            clock.now += next(durations[name])
        return run

    seconds = fastest_times({"a": (make("a"), ["x", "y"]), "b": (make("b"), ["x", "y"])}, repeats=3, clock=clock)
    # warm-up (untimed) on the first call, then 3 rounds x 2 calls; b goes first in round 2.
    assert log[:2] == [("a", "x"), ("b", "x")]
    assert log[2:6] == [("a", "x"), ("b", "x"), ("a", "y"), ("b", "y")]
    assert log[6:10] == [("b", "x"), ("a", "x"), ("b", "y"), ("a", "y")]
    # a (after the 9 s warm-up): x took 5, 7, 8 and y took 1, 2, 3 -> 5 + 1.
    # b: x took 4, 2, 1 and y took 6, 3, 5 -> 1 + 3.
    assert seconds == {"a": 6.0, "b": 4.0}


def test_fastest_times_with_plain_functions_and_bad_input():
    clock, calls = FakeClock(), []

    def slow():
        calls.append("slow")
        clock.now += 2.0 + len(calls) % 2

    def fast():
        calls.append("fast")
        clock.now += 1.0

    assert fastest_times({"slow": slow, "fast": fast}, repeats=2, warmup=False, clock=clock) == {"slow": 2.0, "fast": 1.0}
    assert calls == ["slow", "fast", "fast", "slow"]
    with pytest.raises(ValueError, match="same, non-zero number of calls"):
        fastest_times({"a": (print, [1]), "b": (print, [1, 2])})
    with pytest.raises(TypeError, match="expected a function or"):
        fastest_times({"a": 3})


def test_peak_memory_mb_measures_a_fresh_process():
    baseline = peak_memory_mb("pass")
    with_buffer = peak_memory_mb("buffer = b'x' * (200 * 1024 * 1024)")
    assert 1 < baseline < with_buffer
    assert with_buffer - baseline > 150  # the 200 MiB buffer shows up, the caller's memory does not
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        peak_memory_mb("1 / 0")


def test_compare_reads_two_methods_on_the_seeds_both_were_run_on():
    runs = pd.DataFrame({"method": ["a"] * 5 + ["b"] * 3, "seed": [0, 1, 2, 3, 4, 0, 1, 2],
                         "score": [0.5, 0.6, 0.7, 0.0, 0.0, 0.4, 0.5, 0.6]})
    comparison = compare(runs, "a", "b", "score")
    assert comparison.differences == pytest.approx((0.1, 0.1, 0.1))  # seeds 3 and 4 of "a" are not read
    with pytest.raises(ValueError, match="share at least two seeds"):
        compare(runs[runs["seed"] != 1].query("not (method == 'b' and seed == 2)"), "a", "b", "score")


def test_markdown_table_names_its_index_drops_row_numbers_and_formats_cells():
    named = pd.DataFrame({"score": [0.12345, float("nan")], "speed": [1.5, 2.0]},
                         index=pd.Index(["a", "b"], name="method"))
    lines = markdown_table(named, formats={"speed": "{:.1f}x"}).splitlines()
    assert [cell.strip() for cell in lines[0].strip("|").split("|")] == ["method", "score", "speed"]
    assert [cell.strip() for cell in lines[2].strip("|").split("|")] == ["a", "0.123", "1.5x"]
    assert [cell.strip() for cell in lines[3].strip("|").split("|")] == ["b", "–", "2.0x"]
    numbered = markdown_table(pd.DataFrame({"n": [32], "gain": [0.5]}))
    assert numbered.splitlines()[0].replace(" ", "") == "|n|gain|"
    with pytest.raises(ValueError, match="formats name column"):
        markdown_table(named, formats={"missing": "{}"})
