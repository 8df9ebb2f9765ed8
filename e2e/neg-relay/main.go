// Command neg-relay is a small in-memory Nostr relay with NIP-77 (negentropy) support, built on
// go-nostr's own negentropy implementation (nip77/negentropy, a Go port independent of the Rust
// `negentropy` crate that brotr and rust-nostr's relay builder share). It is a test peer for
// brotr's synchronizer, standing in for `nak serve --negentropy` (khatru) where nak cannot be
// fetched.
//
// It speaks NIP-01 EVENT (id and signature checked; duplicates answered OK true), REQ (stored
// events only: EVENTs newest first, then EOSE; no live subscriptions), CLOSE, and NIP-77
// NEG-OPEN / NEG-MSG / NEG-CLOSE (NEG-ERR on errors), and serves a NIP-11 document
// (supported_nips 1, 11, 77) to `Accept: application/nostr+json`. Every event is kept as is:
// no replaceable or ephemeral semantics, no deletions.
//
//	neg-relay [flags] [PORT]        PORT 0 (default, or $BROTR_NEG_RELAY_PORT) picks a free one
//
// Once listening it prints one line on stdout: `neg-relay ready ws://127.0.0.1:PORT`.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip77/negentropy"
	"github.com/nbd-wtf/go-nostr/nip77/negentropy/storage/vector"
)

var (
	host          = flag.String("host", "127.0.0.1", "address to listen on")
	frameLimit    = flag.Int("frame-limit", 0, "largest NEG-MSG the relay sends, in bytes before hex (0 = unlimited, else at least 4096)")
	maxSyncEvents = flag.Int("max-sync-events", 0, "NEG-OPEN matching more events is refused with NEG-ERR \"blocked: ...\" (0 = no limit)")
	maxLimit      = flag.Int("max-limit", 0, "most events one REQ filter returns (0 = no cap)")
	verbose       = flag.Bool("v", false, "log every message type received")
)

// store keeps every accepted event, by id.
type store struct {
	mu     sync.RWMutex
	events map[string]*nostr.Event
}

func (s *store) add(evt *nostr.Event) (added bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.events[evt.ID]; ok {
		return false
	}
	s.events[evt.ID] = evt
	return true
}

// query returns the events matching f, newest first (ties by id), capped by f's limit and -max-limit.
func (s *store) query(f nostr.Filter) []*nostr.Event {
	s.mu.RLock()
	var out []*nostr.Event
	for _, e := range s.events {
		if f.Matches(e) {
			out = append(out, e)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b *nostr.Event) int {
		if a.CreatedAt != b.CreatedAt {
			if a.CreatedAt > b.CreatedAt {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	limit := len(out)
	if f.LimitZero {
		limit = 0
	} else if f.Limit > 0 && f.Limit < limit {
		limit = f.Limit
	}
	if *maxLimit > 0 && *maxLimit < limit {
		limit = *maxLimit
	}
	return out[:limit]
}

var db = &store{events: map[string]*nostr.Event{}}

// conn is one client connection; messages are handled one at a time, in order.
type conn struct {
	net.Conn
	neg map[string]*negSession // open NIP-77 sessions by sub id
}

// negSession is one open NIP-77 reconciliation and the NEG-MSGs it has answered so far.
type negSession struct {
	*negentropy.Negentropy
	rounds int
}

func (c *conn) send(v ...any) {
	b, err := json.Marshal(v)
	if err != nil {
		log.Printf("marshal: %v", err)
		return
	}
	if err := wsutil.WriteServerMessage(c.Conn, ws.OpText, b); err != nil {
		log.Printf("write: %v", err)
	}
}

// sendRaw writes an already encoded message (NEG-MSG payloads are hex and need no escaping).
func (c *conn) sendRaw(b []byte) {
	if err := wsutil.WriteServerMessage(c.Conn, ws.OpText, b); err != nil {
		log.Printf("write: %v", err)
	}
}

func str(raw json.RawMessage) (string, bool) {
	var s string
	return s, json.Unmarshal(raw, &s) == nil
}

func (c *conn) handle(msg []byte) {
	var arr []json.RawMessage
	if err := json.Unmarshal(msg, &arr); err != nil || len(arr) == 0 {
		c.send("NOTICE", "error: message is not a JSON array")
		return
	}
	typ, _ := str(arr[0])
	if *verbose {
		log.Printf("<- %s (%d bytes)", typ, len(msg))
	}
	switch typ {
	case "EVENT":
		c.onEvent(arr)
	case "REQ":
		c.onReq(arr)
	case "CLOSE":
		// Nothing stays subscribed after EOSE.
	case "NEG-OPEN":
		c.onNegOpen(arr)
	case "NEG-MSG":
		c.onNegMsg(arr)
	case "NEG-CLOSE":
		if len(arr) >= 2 {
			sub, _ := str(arr[1])
			if neg, ok := c.neg[sub]; ok {
				log.Printf("NEG-CLOSE %s after %d rounds", sub, neg.rounds)
			}
			delete(c.neg, sub)
		}
	default:
		c.send("NOTICE", fmt.Sprintf("error: unknown message type %q", typ))
	}
}

func (c *conn) onEvent(arr []json.RawMessage) {
	if len(arr) < 2 {
		c.send("NOTICE", "error: EVENT without an event")
		return
	}
	var evt nostr.Event
	if err := json.Unmarshal(arr[1], &evt); err != nil {
		c.send("NOTICE", "error: bad event: "+err.Error())
		return
	}
	if evt.GetID() != evt.ID {
		c.send("OK", evt.ID, false, "invalid: id is not the event hash")
		return
	}
	if ok, err := evt.CheckSignature(); !ok || err != nil {
		c.send("OK", evt.ID, false, "invalid: bad signature")
		return
	}
	if db.add(&evt) {
		c.send("OK", evt.ID, true, "")
	} else {
		c.send("OK", evt.ID, true, "duplicate: already have this event")
	}
}

func (c *conn) onReq(arr []json.RawMessage) {
	if len(arr) < 2 {
		c.send("NOTICE", "error: REQ without a subscription id")
		return
	}
	sub, _ := str(arr[1])
	seen := map[string]bool{}
	for _, raw := range arr[2:] {
		var f nostr.Filter
		if err := json.Unmarshal(raw, &f); err != nil {
			c.send("CLOSED", sub, "error: bad filter: "+err.Error())
			return
		}
		for _, e := range db.query(f) {
			if !seen[e.ID] {
				seen[e.ID] = true
				c.send("EVENT", sub, e)
			}
		}
	}
	c.send("EOSE", sub)
}

func (c *conn) negErr(sub, reason string) {
	delete(c.neg, sub)
	c.send("NEG-ERR", sub, reason)
}

func (c *conn) onNegOpen(arr []json.RawMessage) {
	if len(arr) != 4 {
		c.send("NOTICE", "error: NEG-OPEN needs [\"NEG-OPEN\", sub, filter, message]")
		return
	}
	sub, _ := str(arr[1])
	delete(c.neg, sub) // re-opening a sub id closes the old one
	var f nostr.Filter
	if err := json.Unmarshal(arr[2], &f); err != nil {
		c.negErr(sub, "error: bad filter: "+err.Error())
		return
	}
	f.Limit, f.LimitZero = 0, false // reconcile everything matching
	msg, _ := str(arr[3])
	events := db.query(f)
	if *maxSyncEvents > 0 && len(events) > *maxSyncEvents {
		c.negErr(sub, fmt.Sprintf("blocked: too many events (%d > %d)", len(events), *maxSyncEvents))
		return
	}
	vec := vector.New()
	for _, e := range events {
		vec.Insert(e.CreatedAt, e.ID)
	}
	vec.Seal()
	neg := &negSession{Negentropy: negentropy.New(vec, *frameLimit)}
	c.neg[sub] = neg
	log.Printf("NEG-OPEN %s: %d events match %s", sub, len(events), arr[2])
	c.reconcile(sub, neg, msg)
}

func (c *conn) onNegMsg(arr []json.RawMessage) {
	if len(arr) < 3 {
		c.send("NOTICE", "error: NEG-MSG needs [\"NEG-MSG\", sub, message]")
		return
	}
	sub, _ := str(arr[1])
	neg, ok := c.neg[sub]
	if !ok {
		c.send("NEG-ERR", sub, "closed: no such negentropy session")
		return
	}
	msg, _ := str(arr[2])
	c.reconcile(sub, neg, msg)
}

func (c *conn) reconcile(sub string, neg *negSession, msg string) {
	neg.rounds++
	out, err := neg.Reconcile(msg)
	if err != nil {
		c.negErr(sub, "error: "+err.Error())
		return
	}
	var b bytes.Buffer
	b.WriteString(`["NEG-MSG",`)
	subJSON, _ := json.Marshal(sub)
	b.Write(subJSON)
	b.WriteString(`,"`)
	b.WriteString(out)
	b.WriteString(`"]`)
	c.sendRaw(b.Bytes())
}

func serveWS(w http.ResponseWriter, r *http.Request) {
	nc, _, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return
	}
	defer nc.Close()
	c := &conn{Conn: nc, neg: map[string]*negSession{}}
	for {
		msg, op, err := wsutil.ReadClientData(nc)
		if err != nil {
			return
		}
		if op == ws.OpText || op == ws.OpBinary {
			c.handle(msg)
		}
	}
}

func nip11(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/nostr+json")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	json.NewEncoder(w).Encode(map[string]any{
		"name":           "brotr neg-relay",
		"description":    "in-memory test relay with NIP-77 (go-nostr negentropy)",
		"supported_nips": []int{1, 11, 77},
		"software":       "brotr/e2e/neg-relay (github.com/nbd-wtf/go-nostr v0.38.2)",
		"version":        "0.1.0",
	})
}

func main() {
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: neg-relay [flags] [PORT]  (PORT 0 or unset: $BROTR_NEG_RELAY_PORT, else a free one)\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetPrefix("neg-relay: ")
	port := os.Getenv("BROTR_NEG_RELAY_PORT")
	if flag.NArg() > 0 {
		port = flag.Arg(0)
	}
	if port == "" {
		port = "0"
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil || flag.NArg() > 1 {
		flag.Usage()
		os.Exit(2)
	}
	if *frameLimit != 0 && *frameLimit < 4096 {
		fmt.Fprintln(os.Stderr, "neg-relay: -frame-limit must be 0 or at least 4096")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(*host, port))
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
			serveWS(w, r)
		case strings.Contains(r.Header.Get("Accept"), "application/nostr+json"):
			nip11(w)
		default:
			fmt.Fprintln(w, "brotr neg-relay: connect with a Nostr client over WebSocket")
		}
	})
	fmt.Printf("neg-relay ready ws://%s\n", ln.Addr())
	os.Stdout.Sync()
	log.Fatal(http.Serve(ln, handler))
}
