//go:build linux

// Command kernel-conntrack-labels asks the running kernel what its conntrack
// makes of every packet of one or more captures (see pkg/oracle). It prints
// one JSON line per packet, files and packets in order:
//
//	{"file":"x.pcap","index":0,"ct":"new","dir":"original"}
//	{"file":"x.pcap","index":5,"ct":"","note":"not injected: not IP: EtherType 0x0806 (ARP)"}
//
// Usage (as root):
//
//	go run ./scripts/kernel-conntrack-labels [-v] [-timeout 2s] [-o DIR] FILE...
//
// -o DIR writes each capture's lines to DIR/NAME.jsonl (NAME: the file name
// without its extension) instead of stdout. -v writes the namespace setup, the netfilter sysctls and every packet's
// events to stderr. Warnings (capture gaps longer than conntrack timeouts can
// tolerate) always go to stderr.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/statewall/statewall/internal/oracle"
)

type line struct {
	File  string `json:"file"`
	Index int    `json:"index"`
	CT    string `json:"ct"`
	Dir   string `json:"dir,omitempty"`
	Note  string `json:"note,omitempty"`
}

func main() {
	verbose := flag.Bool("v", false, "diagnostics on stderr: namespace setup, sysctls, per-packet events")
	timeout := flag.Duration("timeout", 2*time.Second, "safety-net wait for one packet's sentinel")
	outDir := flag.String("o", "", "write DIR/NAME.jsonl per capture instead of stdout")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [-v] [-timeout D] [-o DIR] FILE...\n", filepath.Base(os.Args[0]))
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	opt := oracle.Options{Timeout: *timeout}
	if *verbose {
		opt.Log = os.Stderr
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	start := time.Now()
	total := 0
	for _, path := range flag.Args() {
		res, err := oracle.Run(context.Background(), path, opt)
		if err != nil {
			fail(out, err)
		}
		for _, w := range res.Warnings {
			fmt.Fprintln(os.Stderr, "warning:", w)
		}
		w, f := io.Writer(out), (*os.File)(nil)
		if *outDir != "" {
			name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)) + ".jsonl"
			if f, err = os.Create(filepath.Join(*outDir, name)); err != nil {
				fail(out, err)
			}
			w = f
		}
		bw := bufio.NewWriter(w)
		enc := json.NewEncoder(bw)
		for _, l := range res.Labels {
			if err := enc.Encode(line{File: filepath.Base(path), Index: l.Index, CT: l.CT, Dir: l.Dir, Note: l.Note}); err != nil {
				fail(out, err)
			}
		}
		if err := bw.Flush(); err != nil {
			fail(out, err)
		}
		if f != nil {
			if err := f.Close(); err != nil {
				fail(out, err)
			}
		}
		total += len(res.Labels)
		logv(opt.Log, "%s: %d packets in %v", filepath.Base(path), len(res.Labels), res.Elapsed.Round(time.Millisecond))
	}
	logv(opt.Log, "total: %d files, %d packets in %v", flag.NArg(), total, time.Since(start).Round(time.Millisecond))
}

func fail(out *bufio.Writer, err error) {
	out.Flush()
	fmt.Fprintln(os.Stderr, "kernel-conntrack-labels:", err)
	os.Exit(1)
}

func logv(w io.Writer, format string, a ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", a...)
	}
}
