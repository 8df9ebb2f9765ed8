#!/usr/bin/env bash
# The archive read-side benchmark (probe/benches/archive.rs) on a throwaway PostgreSQL; see
# e2e/bench-pg.sh. BROTR_BENCH_EVENTS (default 1000000); with BROTR_NOSTR_RS_RELAY set (e2e/tools.sh,
# BROTR_NOSTR_RS_RELAY_PROFILE=release) the same queries run against nostr-rs-relay too.
exec bash "$(dirname "$0")/bench-pg.sh" archive
