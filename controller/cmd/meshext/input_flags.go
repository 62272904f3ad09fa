package main

import (
	"flag"

	"github.com/meshext/meshext/controller/inputfile"
)

// addMaxFileSize adds --max-file-size, shared by every command that reads
// resource files; the result holds the limit in bytes.
func addMaxFileSize(fs *flag.FlagSet) *int64 {
	v := inputfile.SizeValue(inputfile.DefaultMaxSize)
	fs.Var(&v, "max-file-size", "`SIZE` of the largest resource file read, e.g. 16MiB or 1048576; bigger files, and anything that is "+
		"not a regular file (FIFO, device, socket, directory named *.yaml), are skipped with a per-file error")
	return (*int64)(&v)
}
