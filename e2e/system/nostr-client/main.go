// Command nostr-client is the system test's Nostr client, on go-nostr (btcec Schnorr, its own
// serialization: independent of the Rust `nostr` crate the probe uses). It makes the relays'
// known events and reads back what the monitors published.
//
//	nostr-client pubkey SECKEY                       hex public key of a hex secret key
//	nostr-client gen -key SECKEY -n N -kind K -content PREFIX -created-at T [-p PUBKEY]
//	    N signed events, content "PREFIX i", created_at T+i (a `p` tag when given), JSON lines
//	nostr-client publish -relay URL < EVENTS         each event sent; exits 1 unless every one is
//	    answered OK true; prints the ids
//	nostr-client req -relay URL -filter JSON [-auth-key SECKEY]
//	    the stored events matching the filter (REQ until EOSE), JSON lines; with -auth-key it
//	    answers the relay's NIP-42 challenge first
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

func die(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "nostr-client: "+format+"\n", a...)
	os.Exit(1)
}

func connect(url string) *nostr.Relay {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := nostr.RelayConnect(ctx, url, nostr.WithNoticeHandler(func(string) {}))
	if err != nil {
		die("connect %s: %v", url, err)
	}
	return r
}

func gen(args []string) {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	key := fs.String("key", "", "secret key (hex)")
	n := fs.Int("n", 1, "events")
	kind := fs.Int("kind", 1, "kind")
	content := fs.String("content", "brotr system test", "content prefix")
	createdAt := fs.Int64("created-at", time.Now().Unix(), "created_at of the first event")
	p := fs.String("p", "", "a p tag with this public key")
	_ = fs.Parse(args)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for i := 0; i < *n; i++ {
		e := nostr.Event{
			CreatedAt: nostr.Timestamp(*createdAt + int64(i)),
			Kind:      *kind,
			Tags:      nostr.Tags{},
			Content:   fmt.Sprintf("%s %d", *content, i),
		}
		if *p != "" {
			e.Tags = append(e.Tags, nostr.Tag{"p", *p})
		}
		if err := e.Sign(*key); err != nil {
			die("sign: %v", err)
		}
		b, _ := json.Marshal(e)
		fmt.Fprintln(out, string(b))
	}
}

func publish(args []string) {
	fs := flag.NewFlagSet("publish", flag.ExitOnError)
	url := fs.String("relay", "", "relay URL")
	workers := fs.Int("workers", 1, "events in flight at once (each waits for its OK)")
	_ = fs.Parse(args)
	r := connect(*url)
	defer r.Close()
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	// With more than one worker the ids are printed in the order the OKs come.
	events := make(chan nostr.Event)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range events {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := r.Publish(ctx, e)
				cancel()
				if err != nil {
					die("publish %s to %s: %v", e.ID, *url, err)
				}
				mu.Lock()
				fmt.Println(e.ID)
				mu.Unlock()
			}
		}()
	}
	for in.Scan() {
		if len(in.Bytes()) == 0 {
			continue
		}
		var e nostr.Event
		if err := json.Unmarshal(in.Bytes(), &e); err != nil {
			die("bad event: %v", err)
		}
		events <- e
	}
	close(events)
	wg.Wait()
}

var errNoChallenge = errors.New("no AUTH challenge received")

// authenticate answers the relay's NIP-42 challenge with key, on a new connection when go-nostr
// missed the challenge (it sometimes drops the relay's first message): the AUTH event's
// challenge tag is empty then.
func authenticate(r *nostr.Relay, url, key string) *nostr.Relay {
	for attempt := 1; ; attempt++ {
		// The challenge arrives after the connect; on a loaded machine later: wait longer each time.
		time.Sleep(time.Duration(attempt) * 500 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := r.Auth(ctx, func(e *nostr.Event) error {
			if c := e.Tags.GetFirst([]string{"challenge", ""}); c == nil || (*c)[1] == "" {
				return errNoChallenge
			}
			return e.Sign(key)
		})
		cancel()
		// nostr-rs-relay answers a good AUTH with nothing (a refused one with OK false), so a
		// missing OK is not an error here; the caller judges by what the REQ returns.
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			return r
		}
		if !errors.Is(err, errNoChallenge) || attempt == 10 {
			die("auth to %s: %v", url, err)
		}
		r.Close()
		r = connect(url)
	}
}

func req(args []string) {
	fs := flag.NewFlagSet("req", flag.ExitOnError)
	url := fs.String("relay", "", "relay URL")
	filter := fs.String("filter", "{}", "NIP-01 filter (JSON)")
	authKey := fs.String("auth-key", "", "answer NIP-42 AUTH with this secret key (hex)")
	_ = fs.Parse(args)
	var f nostr.Filter
	if err := json.Unmarshal([]byte(*filter), &f); err != nil {
		die("bad filter: %v", err)
	}
	r := connect(*url)
	if *authKey != "" {
		r = authenticate(r, *url, *authKey)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	events, err := r.QuerySync(ctx, f)
	if err != nil {
		die("req %s: %v", *url, err)
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for _, e := range events {
		b, _ := json.Marshal(e)
		fmt.Fprintln(out, string(b))
	}
}

func main() {
	if len(os.Args) < 2 {
		die("usage: nostr-client pubkey|gen|publish|req ...")
	}
	switch os.Args[1] {
	case "pubkey":
		if len(os.Args) != 3 {
			die("usage: nostr-client pubkey SECKEY")
		}
		pk, err := nostr.GetPublicKey(os.Args[2])
		if err != nil {
			die("pubkey: %v", err)
		}
		fmt.Println(pk)
	case "gen":
		gen(os.Args[2:])
	case "publish":
		publish(os.Args[2:])
	case "req":
		req(os.Args[2:])
	default:
		die("unknown command %q", os.Args[1])
	}
}
