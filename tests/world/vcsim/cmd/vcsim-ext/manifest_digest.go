package main

// The digests HttpNfcLeaseGetManifest declares: the SHA-1 and SHA-256 of each disk file the lease
// serves, byte for byte.
//
// vSphere computes them on its own host while it sends the disk. Here vcsim shares the
// machine's two cores with the import it serves: hashing every disk again after every transfer
// (a serial pass of SHA-1 and SHA-256 before HttpNfcLeaseComplete) would put vCenter's CPU into
// our measurements. So the digests of a file are computed once per vcsim process and kept while
// the file keeps its size and mtime: what a changed file declares is always its new bytes.

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"sync"
	"time"
)

// fileDigest is a file's SHA-1 and SHA-256, valid while the file keeps size and mtime.
type fileDigest struct {
	sha1, sha256 string
	size         int64
	modTime      time.Time
}

var (
	digestMu    sync.Mutex
	digestCache = map[string]fileDigest{} // by local path
)

// digestOf is the SHA-1 and SHA-256 of the file at path: from the cache while the file is
// unchanged, else read now (and cached). Safe for concurrent use; two first calls for one file
// may both read it.
func digestOf(path string) (fileDigest, error) {
	f, err := os.Open(path)
	if err != nil {
		return fileDigest{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fileDigest{}, err
	}
	digestMu.Lock()
	sum, ok := digestCache[path]
	digestMu.Unlock()
	if ok && sum.size == st.Size() && sum.modTime.Equal(st.ModTime()) {
		return sum, nil
	}
	h1, h256 := sha1.New(), sha256.New()
	n, err := io.Copy(io.MultiWriter(h1, h256), f)
	if err != nil {
		return fileDigest{}, err
	}
	if n != st.Size() { // written while read: do not keep it
		return fileDigest{sha1: hex.EncodeToString(h1.Sum(nil)), sha256: hex.EncodeToString(h256.Sum(nil)), size: n}, nil
	}
	sum = fileDigest{sha1: hex.EncodeToString(h1.Sum(nil)), sha256: hex.EncodeToString(h256.Sum(nil)),
		size: n, modTime: st.ModTime()}
	digestMu.Lock()
	digestCache[path] = sum
	digestMu.Unlock()
	return sum, nil
}
