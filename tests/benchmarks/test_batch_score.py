"""The batch benchmark's own method: the peak memory it reports, and its report's ratios."""

import sys

from benchmarks.batch_score import report, run_measured

# A parent holding 100 MB whose child holds 200 MB more, both alive at once for a second.
_TREE = """
import subprocess, sys, time
held = bytearray(100 * 2**20)
child = subprocess.Popen([sys.executable, "-c",
                          "import time; held = bytearray(200 * 2**20); time.sleep(1.5)"])
child.wait()
print("done")
"""


_BUSY = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
                          "import time\\nend = time.process_time() + 1.0\\nwhile time.process_time() < end: pass"])
end = time.process_time() + 1.0
while time.process_time() < end:
    pass
child.wait()
print("done")
"""


def test_cpu_seconds_are_summed_over_the_process_tree(tmp_path):
    _, _, cpu_s, stdout = run_measured([sys.executable, "-c", _BUSY], {}, tmp_path / "log")
    assert stdout.strip() == "done"
    assert 2.0 <= cpu_s < 3.0  # a second of work in each process, plus two interpreters' start


def test_peak_memory_is_the_sum_over_the_process_tree(tmp_path):
    wall, peak_mb, cpu_s, stdout = run_measured([sys.executable, "-c", _TREE], {}, tmp_path / "log")
    assert stdout.strip() == "done"
    # 300 MB held at once by two processes (plus two interpreters), not the larger one alone.
    assert 300 <= peak_mb < 450
    assert wall >= 1.5


def test_report_states_each_engine_against_the_pyfunc():
    summary = {"pyfunc": {"users_per_s": 40_000.0, "e2e_users_per_s": 30_000.0, "wall_users_per_s": 10_000.0,
                          "cpu_s": 30.0, "peak_rss_mb": 900.0},
               "local": {"users_per_s": 50_000.0, "wall_users_per_s": 20_000.0, "cpu_s": 40.0,
                         "peak_rss_mb": 600.0},
               "spark": {"users_per_s": 10_000.0, "wall_users_per_s": 8_000.0, "cpu_s": 90.5,
                         "peak_rss_mb": 1500.0}}
    text = report({"sizes": {"1000000": {"summary": summary}}})
    lines = text.splitlines()
    assert "| 1,000,000 | pyfunc predict (in memory) | 40,000 | | 1.00 | | 900 |" in lines
    assert "| 1,000,000 | pyfunc read+predict+write | 30,000 | 10,000 | 0.75 | 30.0 | |" in lines
    assert "| 1,000,000 | batch_score local | 50,000 | 20,000 | 1.25 | 40.0 | 600 |" in lines
    assert "| 1,000,000 | batch_score spark | 10,000 | 8,000 | 0.25 | 90.5 | 1,500 |" in lines
