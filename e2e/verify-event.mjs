#!/usr/bin/env node
// Independent cross-check of Nostr events with nostr-tools (noble-curves Schnorr, its own hashing).
// Reads one event JSON per line on stdin; prints one JSON line per event, in order:
//   {"valid":true|false,"hash":"<getEventHash hex>"|null,"error":"..."?}
// nostr-tools is imported from the npm prefix in BROTR_NOSTR_TOOLS_DIR (set by e2e/tools.sh), so
// nothing is installed into the repo.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const prefix = process.env.BROTR_NOSTR_TOOLS_DIR;
if (!prefix) {
  console.error('verify-event.mjs: BROTR_NOSTR_TOOLS_DIR is not set (source e2e/tools.sh)');
  process.exit(2);
}
const require = createRequire(join(prefix, 'index.js'));
const { verifyEvent, getEventHash } = require('nostr-tools/pure');

for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  if (!line.trim()) continue;
  let out;
  try {
    const event = JSON.parse(line);
    out = { valid: verifyEvent(event), hash: getEventHash(event) };
  } catch (e) {
    out = { valid: false, hash: null, error: String(e && e.message ? e.message : e) };
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}
