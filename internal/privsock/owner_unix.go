//go:build unix

package privsock

import (
	"errors"
	"os"
	"syscall"
)

func ownerUID(fi os.FileInfo) (int, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, errors.New("no owner in its file information")
	}
	return int(st.Uid), nil
}
