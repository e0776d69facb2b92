package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
)

// cpuProfileFlag adds --cpuprofile to fs: the offline commands can write a
// CPU profile of their own run, which is how bench/results gets the
// profiles that say where the time goes (go tool pprof -top BINARY FILE).
func cpuProfileFlag(fs *flag.FlagSet) *string {
	return fs.String("cpuprofile", "", "write a CPU profile of the run to `FILE` (read it with go tool pprof)")
}

// startCPUProfile starts profiling into path (nothing when path is empty)
// and returns the function that stops it and closes the file, reporting a
// failure to stderr: defer it.
func startCPUProfile(path string, stderr io.Writer) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(stderr, "statewall: cpu profile: %v\n", err)
		}
	}, nil
}
