//go:build tools

// Package tools pins the Go program the test world builds from Longhorn: backing-image-manager,
// whose `data-source` command is Longhorn's own downloader of a BackingImage (download type,
// with SHA-512 verification). Nothing here is compiled into the product (which is C++);
// longhorn-world.sh builds the package with `go build`.
package tools

import _ "github.com/longhorn/backing-image-manager"
