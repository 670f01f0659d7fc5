"""Log grammar and timelines: lines -> records -> markers -> phases (vLLM and Ray Serve LLM).

Pure text handling on top of ``model``; no processes, no clock of its own.
"""
