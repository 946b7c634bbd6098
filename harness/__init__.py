"""Real services for tests and benchmarks (no mocks): a fresh database, a throwaway
Mosquitto, a private TimescaleDB cluster, ``eldercare`` child processes, and the API
served from a thread. Importable by ``bench/`` without importing ``tests/``."""
