#!/usr/bin/env node
// Test peer for brotr: a Nostr relay on CodyTseng's @nostr-relay/core (TypeScript), with its own
// SQLite event repository (@nostr-relay/event-repository-sqlite) and message validator
// (@nostr-relay/validator), served over `ws` as in the library's README. Everything NIP-01 (EVENT,
// REQ, CLOSE, EOSE, live subscriptions, ephemeral and replaceable kinds, deletions, the NIP-42
// challenge and AUTH check) is the library's code; this file only adds what the library leaves to
// its host: the listening socket, a NIP-11 document, and an auth-required policy (the library
// checks AUTH but never requires it, except for DMs).
//
// e2e/tools.sh copies this file next to the node_modules it installs (e2e/ts-relay/package.json
// and package-lock.json, `npm ci`) and exports its path as BROTR_TS_RELAY:
//
//   node "$BROTR_TS_RELAY" [--port N] [--host H] [--db FILE] [--auth MODE] [--auth-host H]
//                          [--default-limit N] [--filter-cache-ms N] [--log-level L]
//     --port N           0 (default, or $BROTR_TS_RELAY_PORT): a free port
//     --host H           listen address (default 127.0.0.1)
//     --db FILE          SQLite file (default :memory:, gone when the process ends)
//     --auth MODE        none (default): no NIP-42 at all
//                        offer: ["AUTH", challenge] on connect, AUTH checked, nothing required
//                        write | read | both: as offer, and EVENT (write) / REQ (read) before a
//                        successful AUTH get ["OK", id, false, "auth-required: …"] /
//                        ["CLOSED", sub, "auth-required: …"]
//     --auth-host H      the hostname an AUTH event's relay tag must have (default: --host);
//                        the library compares the URL's hostname only, not its port or path
//     --default-limit N  events for a filter without limit (repository default 100; a filter's
//                        limit is capped at 10 × this)
//     --filter-cache-ms  the library caches each filter's result for this long (default 1000;
//                        0 = off): an identical REQ within that time does not see new events
//     --log-level L      DEBUG | INFO | WARN | ERROR (default WARN)
// Prints `ts-relay ready ws://HOST:PORT` on stdout once listening; SIGTERM/SIGINT stop it.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { WebSocketServer } from 'ws';
import { NostrRelay } from '@nostr-relay/core';
import { LogLevel, createOutgoingNoticeMessage } from '@nostr-relay/common';
import { EventRepositorySqlite } from '@nostr-relay/event-repository-sqlite';
import { Validator } from '@nostr-relay/validator';

const require = createRequire(import.meta.url);
const coreVersion = JSON.parse(
  readFileSync(require.resolve('@nostr-relay/core/package.json'), 'utf8'),
).version;

function parseArgs(argv) {
  const opts = {
    port: Number(process.env.BROTR_TS_RELAY_PORT || 0),
    host: '127.0.0.1',
    db: ':memory:',
    auth: 'none',
    authHost: null,
    defaultLimit: 100,
    filterCacheMs: 1000,
    logLevel: 'WARN',
  };
  const flags = {
    '--port': v => (opts.port = Number(v)),
    '--host': v => (opts.host = v),
    '--db': v => (opts.db = v),
    '--auth': v => (opts.auth = v),
    '--auth-host': v => (opts.authHost = v),
    '--default-limit': v => (opts.defaultLimit = Number(v)),
    '--filter-cache-ms': v => (opts.filterCacheMs = Number(v)),
    '--log-level': v => (opts.logLevel = v.toUpperCase()),
  };
  for (let i = 0; i < argv.length; i++) {
    const [name, inline] = argv[i].split(/=(.*)/s, 2);
    const set = flags[name];
    const value = inline ?? argv[++i];
    if (!set || value === undefined) {
      console.error(`ts-relay: bad argument ${argv[i] ?? name} (see the header of server.mjs)`);
      process.exit(2);
    }
    set(value);
  }
  if (!['none', 'offer', 'read', 'write', 'both'].includes(opts.auth)) {
    console.error(`ts-relay: --auth must be none, offer, read, write or both (got ${opts.auth})`);
    process.exit(2);
  }
  if (!(opts.logLevel in LogLevel)) {
    console.error(`ts-relay: --log-level must be one of ${Object.keys(LogLevel).join(', ')}`);
    process.exit(2);
  }
  opts.authHost ??= opts.host;
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const readNeedsAuth = opts.auth === 'read' || opts.auth === 'both';
const writeNeedsAuth = opts.auth === 'write' || opts.auth === 'both';

const repository = new EventRepositorySqlite(opts.db, { defaultLimit: opts.defaultLimit });
await repository.init();
const relay = new NostrRelay(repository, {
  // The library turns NIP-42 on when (and only when) a hostname is given.
  hostname: opts.auth === 'none' ? undefined : opts.authHost,
  logLevel: LogLevel[opts.logLevel],
  filterResultCacheTtl: opts.filterCacheMs,
});

// The auth-required policy: a HandleMessagePlugin in front of the library's own handlers.
if (readNeedsAuth || writeNeedsAuth) {
  relay.register({
    async handleMessage(ctx, message, next) {
      if (ctx.pubkey) return next();
      if (readNeedsAuth && message[0] === 'REQ') {
        ctx.sendMessage(['CLOSED', message[1], 'auth-required: authenticate (NIP-42) to read']);
        return { messageType: 'REQ', events: [] };
      }
      if (writeNeedsAuth && message[0] === 'EVENT') {
        ctx.sendMessage(['OK', message[1].id, false, 'auth-required: authenticate (NIP-42) to publish']);
        return { messageType: 'EVENT', success: false };
      }
      return next();
    },
  });
}
const validator = new Validator();

const nip11 = {
  name: 'brotr ts-relay',
  description: 'test peer: @nostr-relay/core with SQLite storage (e2e/ts-relay/server.mjs)',
  software: 'https://github.com/CodyTseng/nostr-relay',
  version: coreVersion,
  // Not 40: the library refuses an already expired event but serves stored ones past expiry.
  supported_nips: [1, 9, 11, ...(opts.auth === 'none' ? [] : [42]), 50],
  limitation: {
    auth_required: readNeedsAuth,
    restricted_writes: writeNeedsAuth,
    max_limit: opts.defaultLimit * 10,
    default_limit: opts.defaultLimit,
    max_subscriptions: 20,
    max_content_length: 102400,
  },
};

const http = createServer((req, res) => {
  res.setHeader('Access-Control-Allow-Origin', '*');
  res.setHeader('Access-Control-Allow-Headers', '*');
  res.setHeader('Access-Control-Allow-Methods', 'GET, OPTIONS');
  if ((req.headers.accept ?? '').includes('application/nostr+json')) {
    res.writeHead(200, { 'Content-Type': 'application/nostr+json' });
    res.end(JSON.stringify(nip11));
  } else {
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('brotr ts-relay (@nostr-relay/core): connect with a Nostr client\n');
  }
});

const wss = new WebSocketServer({ server: http });
wss.on('connection', (ws, req) => {
  relay.handleConnection(ws, req.socket.remoteAddress);
  ws.on('message', async data => {
    try {
      const message = await validator.validateIncomingMessage(data);
      await relay.handleMessage(ws, message);
    } catch (error) {
      if (error instanceof Error) {
        ws.send(JSON.stringify(createOutgoingNoticeMessage(error.message)));
      }
    }
  });
  ws.on('close', () => relay.handleDisconnect(ws));
  ws.on('error', error => console.error(`ts-relay: websocket error: ${error.message}`));
});

http.listen(opts.port, opts.host, () => {
  const { port } = http.address();
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  process.stdout.write(`ts-relay ready ws://${host}:${port}\n`);
});

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  for (const ws of wss.clients) ws.terminate();
  wss.close();
  http.close();
  await relay.destroy();
  await repository.destroy();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
