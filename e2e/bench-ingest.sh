#!/usr/bin/env bash
# Ingest benchmark (probe/benches/ingest.rs) on a throwaway PostgreSQL; see e2e/bench-pg.sh.
exec bash "$(dirname "$0")/bench-pg.sh" ingest
