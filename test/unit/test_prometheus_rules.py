"""The shipped alert rules (infra/prometheus/alerts.yml) pass `promtool check rules`,
and `promtool test rules` shows each alert firing when it should (alerts.test.yml)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from test.conftest import ROOT

RULES = ROOT / "infra" / "prometheus"
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (make install installs prometheus)"
)


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=RULES, capture_output=True, text=True, timeout=60)


def test_promtool_checks_the_rules():
    run = promtool("check", "rules", "alerts.yml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS: 7 rules found" in run.stdout


def test_promtool_tests_the_rules():
    run = promtool("test", "rules", "alerts.test.yml")
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_is_tested():
    rules = (RULES / "alerts.yml").read_text()
    tests = (RULES / "alerts.test.yml").read_text()
    alerts = [line.split(":", 1)[1].strip() for line in rules.splitlines() if "- alert:" in line]
    assert len(alerts) == 7
    for alert in alerts:
        assert f"alertname: {alert}" in tests, alert
