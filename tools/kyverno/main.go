// Command kyverno is the Kyverno CLI, built from the pinned Kyverno Go module
// so the tests can check this collection's policies with the real engine
// (kyverno apply / kyverno test). Kyverno's cmd package is "main" and cannot
// be imported, so this wrapper does what its main does.
package main

import (
	"os"

	"github.com/kyverno/kyverno/cmd/cli/kubectl-kyverno/commands"
	"github.com/kyverno/kyverno/cmd/cli/kubectl-kyverno/experimental"
	"github.com/kyverno/kyverno/cmd/cli/kubectl-kyverno/log"
)

func main() {
	cmd := commands.RootCommand(experimental.IsEnabled())
	if err := log.Configure(); err != nil {
		os.Exit(1)
	}
	if err := cmd.Execute(); err != nil {
		os.Exit(1)
	}
}
