// Command pause is the pod sandbox process of the project's local Kubernetes
// nodes, written for this project (it is not the upstream pause image).
//
// It blocks until SIGINT or SIGTERM and then exits 0. As PID 1 of a pod it
// also reaps orphaned children whenever SIGCHLD arrives, so that no zombies
// accumulate. Called as "pause sleep" it behaves the same; the sleeper test
// image uses it that way as a long-running container entrypoint.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}

func main() {
	if len(os.Args) > 2 || (len(os.Args) == 2 && os.Args[1] != "sleep") {
		fmt.Fprintln(os.Stderr, "usage: pause [sleep]")
		os.Exit(2)
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "warning: pause should be the first process (pid 1)")
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	reap()
	for sig := range sigs {
		switch sig {
		case syscall.SIGCHLD:
			reap()
		default:
			fmt.Fprintf(os.Stderr, "pause: shutting down, got signal %v\n", sig)
			os.Exit(0)
		}
	}
}
