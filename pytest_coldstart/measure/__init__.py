"""The runner: plan -> prepare -> launch -> ready -> TTFT -> stop -> result; environment and floors."""
