// Go reference programs for bench/core.py.
//
// One program, one benchmark per run, selected with -bench. Each run prints a
// single line "RESULT {json}" on stdout with the same metric names the Python
// children use, so core.py can put the three runtimes side by side.
//
// Build (core.py does this once per run, into a temporary directory):
//
//	go build -o /tmp/x/corego bench/go/core.go
//
// GOMAXPROCS is taken from the environment as usual; core.py sets it to 1 for
// the one-P ping-pong and leaves the default elsewhere. -lock makes the two
// goroutines of the cross-thread benchmarks call runtime.LockOSThread, the
// closest Go gets to "two goroutines homed on different Ps" (Go cannot pin a
// goroutine to a P; a locked goroutine at least always runs on its own M, so
// every hand-off between them crosses threads, as pygmp's cross-P one does).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	benchName = flag.String("bench", "", "spawn|spawng|pingpong|wake|fanin|pairs|parked|sleepers")
	n         = flag.Int("n", 1000, "size: goroutines, round trips or samples")
	m         = flag.Int("m", 100, "second size: round trips per pair (pairs)")
	lock      = flag.Bool("lock", false, "LockOSThread in the two goroutines (pingpong, wake)")
)

func emit(r map[string]interface{}) {
	r["gomaxprocs"] = runtime.GOMAXPROCS(0)
	r["num_cpu"] = runtime.NumCPU()
	b, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	fmt.Printf("RESULT %s\n", b)
}

func secs(d time.Duration) float64 { return d.Seconds() }

// spawn+join: n trivial goroutines and a WaitGroup.
func benchSpawn() {
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(*n)
	for i := 0; i < *n; i++ {
		go func() { wg.Done() }()
	}
	wg.Wait()
	el := time.Since(t0)
	emit(map[string]interface{}{"us_per_goroutine": secs(el) * 1e6 / float64(*n), "wall_s": secs(el)})
}

// spawn+join from a goroutine that is not main.
func benchSpawnG() {
	res := make(chan time.Duration)
	go func() {
		var wg sync.WaitGroup
		t0 := time.Now()
		wg.Add(*n)
		for i := 0; i < *n; i++ {
			go func() { wg.Done() }()
		}
		wg.Wait()
		res <- time.Since(t0)
	}()
	el := <-res
	emit(map[string]interface{}{"us_per_goroutine": secs(el) * 1e6 / float64(*n), "wall_s": secs(el)})
}

// Unbuffered ping-pong between two goroutines, neither of them main.
func benchPingPong() {
	a := make(chan int)
	b := make(chan int)
	res := make(chan time.Duration)
	const warm = 1000
	go func() { // pong
		if *lock {
			runtime.LockOSThread()
		}
		for i := 0; i < warm+*n; i++ {
			v := <-a
			b <- v
		}
	}()
	go func() { // ping
		if *lock {
			runtime.LockOSThread()
		}
		for i := 0; i < warm; i++ {
			a <- i
			<-b
		}
		t0 := time.Now()
		for i := 0; i < *n; i++ {
			a <- i
			<-b
		}
		res <- time.Since(t0)
	}()
	el := <-res
	emit(map[string]interface{}{"us_per_roundtrip": secs(el) * 1e6 / float64(*n)})
}

// Cross-thread wake-up latency: the receiver is parked in a receive while
// its thread is idle; the sender, after sleeping, sends its clock; the
// receiver records how long after the send it ran.
func benchWake() {
	c := make(chan time.Time)
	lat := make(chan []float64)
	go func() { // receiver
		if *lock {
			runtime.LockOSThread()
		}
		var out []float64
		for {
			t0, ok := <-c
			if !ok {
				break
			}
			out = append(out, secs(time.Since(t0)))
		}
		lat <- out
	}()
	go func() { // sender
		if *lock {
			runtime.LockOSThread()
		}
		for i := 0; i < *n; i++ {
			time.Sleep(2 * time.Millisecond)
			c <- time.Now()
		}
		close(c)
	}()
	out := <-lat
	sort.Float64s(out)
	emit(map[string]interface{}{
		"wake_us_p50": out[len(out)/2] * 1e6,
		"wake_us_p90": out[len(out)*9/10] * 1e6,
		"samples":     len(out),
	})
}

// main collects one value from each of n goroutines over an unbuffered channel.
func benchFanIn() {
	out := make(chan int)
	t0 := time.Now()
	for i := 0; i < *n; i++ {
		go func(i int) { out <- i * i }(i)
	}
	sum := 0
	for i := 0; i < *n; i++ {
		sum += <-out
	}
	el := time.Since(t0)
	want := 0
	for i := 0; i < *n; i++ {
		want += i * i
	}
	if sum != want {
		fmt.Fprintf(os.Stderr, "wrong sum %d != %d\n", sum, want)
		os.Exit(1)
	}
	emit(map[string]interface{}{"wall_ms": secs(el) * 1e3})
}

// n pairs ping-ponging at once, m round trips each.
func benchPairs() {
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(*n)
	for p := 0; p < *n; p++ {
		a := make(chan int)
		b := make(chan int)
		go func() {
			for i := 0; i < *m; i++ {
				a <- i
				<-b
			}
			wg.Done()
		}()
		go func() {
			for i := 0; i < *m; i++ {
				b <- <-a
			}
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	rt := float64(*n) * float64(*m)
	emit(map[string]interface{}{"roundtrips_per_s": rt / secs(el), "wall_ms": secs(el) * 1e3})
}

func procStatus(key string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, key+":") {
			fields := strings.Fields(line[len(key)+1:])
			v, _ := strconv.ParseInt(fields[0], 10, 64)
			return v
		}
	}
	return -1
}

// n goroutines parked receiving on one shared channel: RSS per goroutine and
// the OS thread count.
func benchParked() {
	runtime.GC()
	rss0 := procStatus("VmRSS") // KiB
	ch := make(chan int)
	var wg sync.WaitGroup
	wg.Add(*n)
	for i := 0; i < *n; i++ {
		go func() {
			wg.Done()
			<-ch
		}()
	}
	wg.Wait()
	time.Sleep(200 * time.Millisecond)
	rss1 := procStatus("VmRSS")
	emit(map[string]interface{}{
		"kib_per_goroutine": float64(rss1-rss0) / float64(*n),
		"threads":           procStatus("Threads"),
		"goroutines":        runtime.NumGoroutine(),
	})
	os.Exit(0)
}

// n goroutines each sleeping 10 ms: wall time from the first spawn until all
// are done.
func benchSleepers() {
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(*n)
	for i := 0; i < *n; i++ {
		go func() {
			time.Sleep(10 * time.Millisecond)
			wg.Done()
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	emit(map[string]interface{}{"wall_ms": secs(el) * 1e3})
}

func main() {
	flag.Parse()
	switch *benchName {
	case "spawn":
		benchSpawn()
	case "spawng":
		benchSpawnG()
	case "pingpong":
		benchPingPong()
	case "wake":
		benchWake()
	case "fanin":
		benchFanIn()
	case "pairs":
		benchPairs()
	case "parked":
		benchParked()
	case "sleepers":
		benchSleepers()
	default:
		fmt.Fprintf(os.Stderr, "unknown -bench %q\n", *benchName)
		os.Exit(2)
	}
}
