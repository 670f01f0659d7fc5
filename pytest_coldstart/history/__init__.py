"""History and the PR gate: samples, the compare decision, the asv store, commits, sweeps, noise."""
