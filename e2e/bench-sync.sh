#!/usr/bin/env bash
# Synchronizer benchmark (probe/benches/sync.rs) on a throwaway PostgreSQL; see e2e/bench-pg.sh.
exec bash "$(dirname "$0")/bench-pg.sh" sync
