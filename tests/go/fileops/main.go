// File operations of a Go program, made by the Go runtime's own system
// calls (no C library function sees them), each printed as NAME=RESULT for
// tests/tests/fidelity.rs, which runs it in a container. Built with cgo
// (cgo.go: dynamically linked, so lpmx runs it on the image's loader) and
// without (static: lpmx's loader starts it).
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
)

func main() {
	path, marker := os.Args[1], os.Args[2]
	b, err := os.ReadFile(path)
	show("read", strings.TrimSpace(string(b)), err)
	err = os.Chdir("/usr/share")
	wd, _ := os.Getwd()
	show("getwd", wd, err)
	entries := 0
	err = filepath.Walk("/usr/share/doc", func(string, os.FileInfo, error) error {
		entries++
		return nil
	})
	show("walk", fmt.Sprint(entries > 10), err)
	dir, err := os.MkdirTemp("/var/tmp", "go-")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644)
	}
	if err == nil {
		err = os.RemoveAll(dir)
	}
	show("mkdirtemp_write_removeall", "ok", err)
	out, err := exec.Command("cat", path).Output()
	show("exec", strings.TrimSpace(string(out)), err)
	u, err := user.Current()
	name := ""
	if err == nil {
		name = u.Username
	}
	show("user", name, err)
	_, err = os.Stat(marker)
	show("host_marker", "visible", err)
	fmt.Printf("parallel_failures=%d\n", parallel(path))
}

func show(name, value string, err error) {
	if err != nil {
		value = err.Error()
	}
	fmt.Printf("%s=%s\n", name, value)
}

// Many goroutines on several threads reading and starting programs at
// once, while one spins (the runtime preempts it with signals).
func parallel(path string) int64 {
	var failures int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				if b, err := os.ReadFile(path); err != nil || len(b) == 0 {
					atomic.AddInt64(&failures, 1)
				}
			}
		}()
	}
	for i := 0; i < 80; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := exec.Command("cat", path).Output(); err != nil || len(out) == 0 {
				atomic.AddInt64(&failures, 1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	return failures
}
