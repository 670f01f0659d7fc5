"""The cold-start suite: `pytest benchmarks -m coldstart --model tiny-llama`.

The plugin parametrizes this test over --model x --optimization x --launcher x
--coldstart-repeat. Each item is one real cold start: fresh caches (or a
pre-populated compile cache), /health, time to first token, budgets.
"""

import pytest

from pytest_coldstart.plugin import ColdstartHandle


@pytest.mark.coldstart
def test_cold_start(coldstart: ColdstartHandle) -> None:
    result = coldstart.run()
    assert result.exit_status == "ok"
    assert result.ttft_s is not None, "the first streamed response carried no text"
