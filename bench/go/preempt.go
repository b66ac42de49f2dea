// Preemption lateness in Go, the peer of bench/preempt.py's "lateness" case:
// with GOMAXPROCS=1, one goroutine spins in an empty loop, another sleeps 1 ms
// in a loop for the given number of seconds; print each wake-up's lateness in
// seconds, one per line.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	secs, _ := strconv.ParseFloat(os.Args[1], 64)
	stop := false
	go func() {
		x := 0
		for !stop {
			x++
		}
	}()
	time.Sleep(time.Millisecond)
	var late []float64
	end := time.Now().Add(time.Duration(secs * float64(time.Second)))
	for time.Now().Before(end) {
		t := time.Now()
		time.Sleep(time.Millisecond)
		late = append(late, time.Since(t).Seconds()-0.001)
	}
	stop = true
	for _, l := range late {
		fmt.Println(l)
	}
}
