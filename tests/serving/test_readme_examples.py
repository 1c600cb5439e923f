"""The README's "Try it" commands, run as a new user would (bash and curl), against a real service.

Only the address changes (the test's service listens on a free port); each answer is checked for
what the README says it holds.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest

from tests.serving.conftest import PROJECT

README_ADDRESS = "http://127.0.0.1:5001"


def readme_commands() -> list[str]:
    """The curl commands of the README's "Try it" section, each as bash would read it, comments dropped."""
    text = (PROJECT / "README.md").read_text()
    section = text.split("## Try it", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)[1]
    commands, current = [], ""
    for line in block.splitlines():
        if not current and not line.startswith("curl"):
            continue  # comment lines and blank lines between commands
        current += line + "\n"
        if current.count("'") % 2 == 0 and not line.endswith("\\"):
            # Complete: quotes balanced, no continuation. A trailing comment starts after the last quote.
            commands.append(re.sub(r"(['\"\w/])[ \t]+#[^'\n]*\n$", r"\1\n", current).strip())
            current = ""
    return commands


@pytest.fixture(scope="module")
def answers(service):
    assert shutil.which("curl"), "curl is needed to run the README's commands"
    found = {}
    for command in readme_commands():
        route = re.search(re.escape(README_ADDRESS) + r"(/[a-z_]+)", command)[1]
        run = subprocess.run(["bash", "-c", command.replace(README_ADDRESS, service.http.base)],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, (command, run.stderr)
        found[route] = json.loads(run.stdout)
        time.sleep(1.0)  # a person types between commands; the log writer batches for 0.5 s
    return found


def test_the_readme_shows_every_route_a_newcomer_needs():
    routes = {re.search(r"5001(/[a-z_]+)", c)[1] for c in readme_commands()}
    assert routes >= {"/predict", "/batch_predict", "/labels", "/performance", "/drift", "/stats", "/health"}
    assert "http://127.0.0.1:5001/dashboard" in (PROJECT / "README.md").read_text()


def test_every_readme_command_gets_the_answer_the_readme_describes(answers, http):
    outputs = {"predicted_revenue", "payer_probability", "revenue_p10", "revenue_p90"}
    predict = answers["/predict"]
    assert outputs <= set(predict) and predict["user_id"] == "u-1" and predict["model_version"] == "1"
    batch = answers["/batch_predict"]
    assert [p["user_id"] for p in batch["predictions"]] == ["u-2", "u-3"] and batch["count"] == 2
    assert batch["total_predicted_revenue"] == pytest.approx(sum(p["predicted_revenue"] for p in batch["predictions"]))
    assert answers["/labels"]["accepted"] == 3
    assert isinstance(answers["/performance"]["groups"], list) and answers["/performance"]["by"] == "country"
    # The session's champion is logged by the tests without `train`, so without a reference profile:
    # the README's model (trained by `make serve`) has one and answers a report.
    drift = answers["/drift"]
    assert drift.get("status") in ("ok", "warn", "drift", "insufficient_data") or drift["error"] == "no_reference", drift
    assert answers["/stats"]["total_predictions"] >= 3
    assert answers["/health"]["status"] == "healthy"
    status, head, page = http.get("/dashboard")
    assert status == 200 and head["Content-Type"].startswith("text/html")


def test_the_readme_error_example_is_what_the_service_answers(http):
    text = (PROJECT / "README.md").read_text()
    shown = json.loads(re.search(r'"problems": (\[.*?\])', text)[1])
    user = {"country": "es", "source": "Organic", "platform": "iOS", "event_1": -1, "event_2": 0}
    status, _, body = http.post("/predict", user)
    assert status == 400 and body["error"] == "invalid_input" and body["problems"] == shown
