package tunnel_test

import "syscall"

const syscall_ECONNRESET = syscall.ECONNRESET
