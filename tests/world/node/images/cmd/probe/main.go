// probe is the test world's busybox-free test container (world.local/node-probe:1): it runs the
// steps given as arguments, in order, and reports each on stdout, so that a world test can see
// them in `kubectl logs`. A failing step prints "probe: ..." on stderr and exits 1.
//
//	print:TEXT                  print TEXT
//	write:PATH:SIZE:SEED        write SIZE bytes of the seeded pattern to PATH (a file or a block device)
//	sha256:PATH:SIZE            print "sha256 PATH SIZE HEX" of PATH's first SIZE bytes
//	ticks:SECONDS               print "tick N" every SECONDS, forever
//	sleep                       wait for SIGTERM or SIGINT
//
// The pattern is block i = SHA-256(SEED || i as 8 little-endian bytes), 32 bytes each, truncated
// to SIZE; world tests compute the same bytes to check what reached the node's volume.
package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "probe: "+format+"\n", a...)
	os.Exit(1)
}

func pattern(seed string, size int64) []byte {
	out := make([]byte, 0, size+32)
	var ctr [8]byte
	for i := uint64(0); int64(len(out)) < size; i++ {
		binary.LittleEndian.PutUint64(ctr[:], i)
		h := sha256.Sum256(append([]byte(seed), ctr[:]...))
		out = append(out, h[:]...)
	}
	return out[:size]
}

func size(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		fail("bad size %q", s)
	}
	return n
}

func write(path string, n int64, seed string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		fail("open %s: %v", path, err)
	}
	if _, err := f.Write(pattern(seed, n)); err != nil {
		fail("write %s: %v", path, err)
	}
	if err := f.Sync(); err != nil {
		fail("fsync %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		fail("close %s: %v", path, err)
	}
	fmt.Printf("wrote %s %d\n", path, n)
}

func sum(path string, n int64) {
	f, err := os.Open(path)
	if err != nil {
		fail("open %s: %v", path, err)
	}
	defer f.Close()
	h := sha256.New()
	got, err := io.CopyN(h, f, n)
	if err != nil {
		fail("read %s: %v after %d bytes", path, err, got)
	}
	fmt.Printf("sha256 %s %d %s\n", path, n, hex.EncodeToString(h.Sum(nil)))
}

func main() {
	for _, step := range os.Args[1:] {
		verb, arg, _ := strings.Cut(step, ":")
		switch verb {
		case "print":
			fmt.Println(arg)
		case "write":
			p := strings.Split(arg, ":")
			if len(p) != 3 {
				fail("write wants PATH:SIZE:SEED, got %q", arg)
			}
			write(p[0], size(p[1]), p[2])
		case "sha256":
			p := strings.Split(arg, ":")
			if len(p) != 2 {
				fail("sha256 wants PATH:SIZE, got %q", arg)
			}
			sum(p[0], size(p[1]))
		case "ticks":
			every := time.Duration(size(arg)) * time.Second
			for i := 0; ; i++ {
				fmt.Printf("tick %d\n", i)
				time.Sleep(every)
			}
		case "sleep":
			c := make(chan os.Signal, 1)
			signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
			<-c
			return
		default:
			fail("unknown step %q", step)
		}
	}
}
