// A small program that tests/tests/go.rs builds with the Go toolchain
// installed inside a container, with and without cgo, and runs there:
// it prints what it sees of the container as NAME=VALUE lines.
//
// Usage: inside MARKER WRITE STATUS   (or: inside sleep)
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "sleep" {
		fmt.Println("sleeping")
		time.Sleep(30 * time.Second)
		return
	}
	marker, write := os.Args[1], os.Args[2]
	status, _ := strconv.Atoi(os.Args[3])
	release, err := os.ReadFile("/etc/os-release")
	for _, line := range strings.Split(string(release), "\n") {
		if strings.HasPrefix(line, "VERSION_CODENAME=") {
			fmt.Println("codename=" + strings.TrimPrefix(line, "VERSION_CODENAME="))
		}
	}
	if err != nil {
		fmt.Println("os_release_error=" + err.Error())
	}
	_, err = os.Stat(marker)
	fmt.Println("marker_visible=" + strconv.FormatBool(err == nil))
	err = os.WriteFile(write, []byte("written by go\n"), 0o644)
	fmt.Println("write=" + strconv.FormatBool(err == nil))
	fmt.Printf("ids=%d:%d\n", os.Getuid(), os.Getgid())
	os.Exit(status)
}
