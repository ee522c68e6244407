// Command skiff is the single skiff binary: server, agent, kubectl and the
// standalone components, chosen by the first argument (or by the name it is
// invoked as: a symlink named kubectl runs kubectl).
package main

import (
	"os"

	"skiff.dev/skiff/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args))
}
