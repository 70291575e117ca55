//go:build tools

// Package tools records the command built from this module so that
// `go mod tidy` keeps every dependency it needs.
package tools

import _ "github.com/projectcontour/contour/cmd/contour"
