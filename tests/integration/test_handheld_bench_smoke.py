"""The handheld bench runs end to end on a small load and prints every figure it promises (its own
stack, the real device-facing service, bridge, cases engine and dashboard, Chromium): a smoke
test of the bench itself, with no assertion on how fast anything was (speed lives in bench/)."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from config.settings import REPO_ROOT

FIGURES = [
    r"signed in 20/20 through POST /session",
    r"downlink streams open: 20/20 ",
    r"fix -> wall over [\d,]+ fixes: p50 \d+ ms, p99 \d+ ms",
    r"report with a 1 MB photo -> dispatcher's queue over 3/3 reports \(3 stored\): p50 \d+ ms, p99 \d+ ms",
    r"memory per open connection: -?[\d.]+ KB",
    r"CPU during the run \(% of one core\): .*ingest-http \d+",
    r"the phones' driver: \d+ % of one core",
]


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_handheld_bench_prints_its_figures_for_twenty_phones():
    run = subprocess.run([sys.executable, "-m", "bench.handheld_bench", "--phones", "20", "--seconds", "15",
                          "--reports", "3"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=1400)
    assert run.returncode == 0, run.stderr[-3000:]
    missing = [f for f in FIGURES if not re.search(f, run.stdout)]
    assert not missing, f"not printed: {missing}\n{run.stdout}"
    fixes = int(re.search(r"fix -> wall over ([\d,]+) fixes", run.stdout).group(1).replace(",", ""))
    assert fixes > 0                         # the wall applied fixes the phones sent through HTTP
