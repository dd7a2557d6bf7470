"""Development tooling, apart from the runtime: the local database server, the demo and its simulated
fleet, the API as a child process (demo, tests, benchmarks)."""
