// pause is the sandbox ("pause") container of the test world's node: it holds a Pod's namespaces
// and waits for SIGTERM or SIGINT. Static, no libc; packed into world.local/pause:1 by mkimage.py.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	<-c
}
