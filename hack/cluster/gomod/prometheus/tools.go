//go:build tools

// Package tools records the commands built from this module so that
// `go mod tidy` keeps every dependency they need.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
