# The suite needs nothing beyond the pytest-coldstart plugin (entry point pytest11).
