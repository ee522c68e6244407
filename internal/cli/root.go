// Package cli holds skiff's command line: the root command and one file
// (or subpackage) per verb. Flag definitions live here; the components they
// start live in their own packages and are wired explicitly.
package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"skiff.dev/skiff/internal/cli/agent"
	"skiff.dev/skiff/internal/cli/controllermanager"
	"skiff.dev/skiff/internal/cli/hollownodes"
	"skiff.dev/skiff/internal/cli/images"
	"skiff.dev/skiff/internal/cli/scheduler"
	"skiff.dev/skiff/internal/version"
)

// Main runs skiff with argv and returns the exit code.
func Main(argv []string) int {
	if filepath.Base(argv[0]) == "kubectl" {
		return runKubectl(argv[1:])
	}
	if len(argv) > 1 && argv[1] == "kubectl" {
		// kubectl parses its own flags; cobra must not see them.
		return runKubectl(argv[2:])
	}
	root := newRoot()
	root.SetArgs(argv[1:])
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "skiff:", err)
		return 1
	}
	return 0
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "skiff",
		Short:         "skiff: a Kubernetes-compatible container orchestrator in one binary",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Get().GitVersion,
	}
	root.AddCommand(
		newServerCommand(),
		&cobra.Command{
			Use:                "kubectl",
			Short:              "Run the built-in kubectl (defaults to the server's admin kubeconfig)",
			DisableFlagParsing: true,
			RunE: func(cmd *cobra.Command, args []string) error {
				if code := runKubectl(args); code != 0 {
					os.Exit(code)
				}
				return nil
			},
		},
		scheduler.NewCommand(),
		hollownodes.NewCommand(),
		controllermanager.NewCommand(),
		agent.NewCommand(),
		agent.NewCheckConfigCommand(),
		images.NewCommand(),
	)
	return root
}
