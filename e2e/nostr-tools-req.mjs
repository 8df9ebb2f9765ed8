#!/usr/bin/env node
// A REQ by nostr-tools (its Relay class: its own WebSocket handling and message parsing), for
// tests that check a relay of ours with a client we did not write.
//   node --experimental-websocket e2e/nostr-tools-req.mjs RELAY_URL FILTER_JSON
// Prints each event received before EOSE as one JSON line, in the order received; exits 1 on a
// CLOSED, a connection error or no EOSE within 10 s. Events whose signature nostr-tools rejects
// are dropped by it (so they show up as missing). nostr-tools is imported from the npm prefix
// in BROTR_NOSTR_TOOLS_DIR (set by e2e/tools.sh).
import { createRequire } from 'node:module';
import { join } from 'node:path';

const prefix = process.env.BROTR_NOSTR_TOOLS_DIR;
if (!prefix) {
  console.error('nostr-tools-req.mjs: BROTR_NOSTR_TOOLS_DIR is not set (source e2e/tools.sh)');
  process.exit(2);
}
const [url, filterJson] = process.argv.slice(2);
const require = createRequire(join(prefix, 'index.js'));
const { Relay } = require('nostr-tools/relay');

const timer = setTimeout(() => { console.error('no EOSE within 10 s'); process.exit(1); }, 10000);
try {
  const relay = await Relay.connect(url);
  relay.subscribe([JSON.parse(filterJson)], {
    onevent(event) { process.stdout.write(JSON.stringify(event) + '\n'); },
    // Exit at once: closing the subscription first would call onclose.
    oneose() { clearTimeout(timer); process.exit(0); },
    onclose(reason) { console.error(`closed: ${reason}`); process.exit(1); },
  });
} catch (e) {
  console.error(String(e && e.message ? e.message : e));
  process.exit(1);
}
