//go:build !unix

package privsock

import (
	"errors"
	"os"
)

// ownerUID: files have no uid here (Windows), so a directory cannot be
// shown to be the user's alone, and no private socket is made.
func ownerUID(os.FileInfo) (int, error) {
	return 0, errors.New("a socket only its owner can open is not implemented on this system: connect with --manager")
}
