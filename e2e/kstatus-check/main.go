// kstatus-check prints the kstatus of Kubernetes objects, computed by
// sigs.k8s.io/cli-utils/pkg/kstatus/status (the rules Flux's health checks and `kubectl
// wait`-style tools apply), and optionally asserts it.
//
//	kubectl get bd,rmon -o json | kstatus-check [--expect Current] [--expect-message TEXT]
//
// Reads one object or a List as JSON (or YAML) from stdin and prints one line per object:
// "Kind namespace/name: Status: message". With --expect, exits 1 unless every object has that
// status (Current, InProgress, Failed, Terminating, NotFound, Unknown).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

func main() {
	expect := flag.String("expect", "", "fail unless every object has this kstatus")
	expectMessage := flag.String("expect-message", "", "fail unless every message contains this text")
	flag.Parse()
	if *expect != "" && !known(*expect) {
		fail("unknown status %q (want one of Current, InProgress, Failed, Terminating, NotFound, Unknown)", *expect)
	}
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	objs, err := parse(in)
	if err != nil {
		fail("%v", err)
	}
	if len(objs) == 0 {
		fail("no objects on stdin")
	}
	bad := 0
	for _, u := range objs {
		res, err := status.Compute(u)
		if err != nil {
			fail("%s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
		line := fmt.Sprintf("%s %s/%s: %s: %s", u.GetKind(), u.GetNamespace(), u.GetName(), res.Status, res.Message)
		switch {
		case *expect != "" && string(res.Status) != *expect:
			line += "   <- want " + *expect
			bad++
		case *expectMessage != "" && !strings.Contains(res.Message, *expectMessage):
			line += fmt.Sprintf("   <- want a message with %q", *expectMessage)
			bad++
		}
		fmt.Println(line)
	}
	if bad > 0 {
		os.Exit(1)
	}
}

// parse reads one object or a List (`kubectl get -o json` of several objects), with integers as
// int64 as the API machinery expects them.
func parse(in []byte) ([]*unstructured.Unstructured, error) {
	js, err := yaml.YAMLToJSON(in)
	if err != nil {
		return nil, fmt.Errorf("stdin is not JSON or YAML: %v", err)
	}
	obj, err := runtime.Decode(unstructured.UnstructuredJSONScheme, js)
	if err != nil {
		return nil, fmt.Errorf("stdin is not a Kubernetes object or List: %v", err)
	}
	switch o := obj.(type) {
	case *unstructured.Unstructured:
		return []*unstructured.Unstructured{o}, nil
	case *unstructured.UnstructuredList:
		out := make([]*unstructured.Unstructured, 0, len(o.Items))
		for i := range o.Items {
			out = append(out, &o.Items[i])
		}
		return out, nil
	}
	return nil, fmt.Errorf("stdin decodes to %T", obj)
}

func known(s string) bool {
	for _, st := range []status.Status{status.CurrentStatus, status.InProgressStatus, status.FailedStatus,
		status.TerminatingStatus, status.NotFoundStatus, status.UnknownStatus} {
		if string(st) == s {
			return true
		}
	}
	return false
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kstatus-check: "+format+"\n", args...)
	os.Exit(2)
}
