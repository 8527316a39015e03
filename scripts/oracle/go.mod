module oracle

go 1.19

require (
	github.com/robfig/cron/v3 v3.0.1
	github.com/bmatcuk/doublestar v1.3.4
)

replace github.com/robfig/cron/v3 => ./src/robfig

replace github.com/bmatcuk/doublestar => ./src/doublestar
