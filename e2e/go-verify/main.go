// Command go-verify is an independent cross-check of Nostr events with go-nostr (btcec Schnorr,
// its own serialization and hashing), the library nak is built on. It stands in for `nak verify`
// where the nak module itself cannot be fetched.
//
// It reads one event JSON per line on stdin and prints one JSON line per event, in order:
//
//	{"valid":true|false,"hash":"<GetID hex>"|null,"error":"..."}
//
// valid means the id is the event's hash and the signature checks against it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/nbd-wtf/go-nostr"
)

type verdict struct {
	Valid bool    `json:"valid"`
	Hash  *string `json:"hash"`
	Error string  `json:"error,omitempty"`
}

func check(line []byte) verdict {
	var evt nostr.Event
	if err := json.Unmarshal(line, &evt); err != nil {
		return verdict{Error: err.Error()}
	}
	hash := evt.GetID()
	v := verdict{Hash: &hash}
	if hash != evt.ID {
		v.Error = "id is not the event hash"
		return v
	}
	ok, err := evt.CheckSignature()
	if err != nil {
		v.Error = err.Error()
	}
	v.Valid = ok && err == nil
	return v
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		if len(in.Bytes()) == 0 {
			continue
		}
		b, _ := json.Marshal(check(in.Bytes()))
		fmt.Fprintln(out, string(b))
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "go-verify:", err)
		os.Exit(2)
	}
}
