// Oracle: reads "cron<TAB>spec<TAB>unix" or "glob<TAB>pattern<TAB>value" lines, prints answers.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar"
	cron "github.com/robfig/cron/v3"
)

func main() {
	parser := cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	for in.Scan() {
		parts := strings.SplitN(in.Text(), "\t", 3)
		switch parts[0] {
		case "cron":
			s, err := parser.Parse(parts[1])
			if err != nil {
				fmt.Printf("err\t%s\n", err)
				continue
			}
			u, _ := strconv.ParseInt(parts[2], 10, 64)
			n := s.Next(time.Unix(u, 0).UTC())
			if n.IsZero() {
				fmt.Println("never")
			} else {
				fmt.Printf("ok\t%d\n", n.Unix())
			}
		case "glob":
			ok, err := doublestar.Match(parts[1], parts[2])
			if err != nil {
				fmt.Printf("err\t%s\n", err)
			} else {
				fmt.Printf("ok\t%v\n", ok)
			}
		}
	}
}
