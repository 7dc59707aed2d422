// Package charts holds Tether's Helm chart, charts/tether, embedded so that
// `tether helm install` needs no chart on disk; `helm install tether
// charts/tether` installs the same directory.
package charts

import "embed"

// Tether is the chart's directory, tether/ at its root.
//
//go:embed all:tether
var Tether embed.FS
