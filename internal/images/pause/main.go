// Command pause is skiff's sandbox ("infra") container process: PID 1 of
// every pod's sandbox. It holds the pod's namespaces open, reaps zombies left
// by processes that joined its PID namespace, and exits 0 on SIGTERM or
// SIGINT. Built static (CGO_ENABLED=0) into localhost/skiff/pause:v1.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s == syscall.SIGCHLD {
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
