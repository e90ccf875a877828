module labhub.test/grafana-oauth

go 1.24

require (
	github.com/jmespath-community/go-jmespath v1.1.1
	golang.org/x/oauth2 v0.30.0
)

require golang.org/x/exp v0.0.0-20230314191032-db074128a8ec // indirect
