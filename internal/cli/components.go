package cli

import (
	"skiff.dev/skiff/internal/server"
)

// AddComponents registers the in-process components `skiff server` runs
// beside the API server, honouring the --disable-* flags.
func AddComponents(s *server.Server) {
}
