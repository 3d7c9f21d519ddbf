// Command pause is the pod sandbox process of the k8s-e2e cluster: it holds
// the pod's namespaces open, reaps the zombies a shared PID namespace leaves
// to it, and exits on SIGINT or SIGTERM. It stands in for
// registry.k8s.io/pause, which cannot be pulled offline; it is built static
// and packed into a FROM-scratch image by k8s-e2e.sh.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if os.Getpid() != 1 {
		os.Stderr.WriteString("pause: warning: not PID 1\n")
	}
	sig := make(chan os.Signal, 8)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
