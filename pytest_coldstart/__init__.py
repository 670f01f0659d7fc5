"""pytest-coldstart: bring an LLM server up cold, time every startup phase."""

from pytest_coldstart.model.result import SCHEMA_VERSION, RunResult
from pytest_coldstart.logs.timeline import Phase, Timeline, timeline_from_log

__version__ = "0.1.0"
__all__ = ["SCHEMA_VERSION", "Phase", "RunResult", "Timeline", "timeline_from_log", "__version__"]
