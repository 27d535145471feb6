package dbtest

import "runtime/debug"

// riverVersion is the River module version this binary was built with, so a
// River upgrade (and its new migrations) gets a new template database.
func riverVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == "github.com/riverqueue/river" {
			return dep.Version
		}
	}
	return "unknown"
}
