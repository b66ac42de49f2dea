// The thread-count peer of bench/threads.py: N goroutines each make one 50 ms
// blocking system call (nanosleep through the syscall package, so the runtime
// enters a syscall and sysmon hands the P to another thread).  Prints one JSON
// line: wall seconds, peak and settled OS threads (/proc/self/task), settled
// being counted `settle` seconds after the calls returned.
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func threads() int {
	d, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return -1
	}
	return len(d)
}

func main() {
	n, _ := strconv.Atoi(os.Args[1])
	settle, _ := strconv.ParseFloat(os.Args[2], 64)
	before := threads()
	peak := before
	stop := make(chan bool)
	var mu sync.Mutex
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
				t := threads()
				mu.Lock()
				if t > peak {
					peak = t
				}
				mu.Unlock()
			}
		}
	}()
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			ts := syscall.Timespec{Sec: 0, Nsec: 50 * 1000 * 1000}
			syscall.Nanosleep(&ts, nil)
			wg.Done()
		}()
	}
	wg.Wait()
	wall := time.Since(t0).Seconds()
	close(stop)
	time.Sleep(time.Duration(settle * float64(time.Second)))
	mu.Lock()
	fmt.Printf("{\"wall\": %f, \"before\": %d, \"peak\": %d, \"settled\": %d}\n", wall, before, peak, threads())
	mu.Unlock()
}
