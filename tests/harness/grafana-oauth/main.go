// Command grafana-oauth is a SIMULATED Grafana sign-in: Grafana cannot run here (no Debian
// package, no registry), so this stand-in performs the client side of Grafana 12.1.0's generic
// OAuth connector with the two libraries Grafana itself uses for it: golang.org/x/oauth2
// (authorization URL, code exchange; v0.30.0 here) and github.com/jmespath-community/go-jmespath
// (the *_attribute_path settings; v1.1.1, Grafana's go.mod pin).
//
// What it copies from grafana/grafana (pkg/login/social/connectors/generic_oauth.go, social_base.go,
// pkg/util/json.go), read at v12.1.0's layout; nothing else of Grafana is imitated:
//   - settings: the GF_AUTH_GENERIC_OAUTH_* keys role monitoring renders (scopes space-separated,
//     auth_style InParams, use_pkce false), redirect URL <GF_SERVER_ROOT_URL>login/generic_oauth;
//   - user info: GET api_url with the access token; login from login_attribute_path, name from
//     name_attribute_path, email from email_attribute_path (without one Grafana would ask
//     <api_url>/emails: reported as an error here), groups from groups_attribute_path;
//   - role: role_attribute_path's string result; "GrafanaAdmin" (any case) is Admin plus server
//     admin when allow_assign_grafana_admin; other results are title-cased and must be Admin,
//     Editor, Viewer or None; no role with role_attribute_strict refuses the sign-in.
//
// Usage: grafana-oauth authorize|signin|search < request.json (see main); prints one JSON object.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/jmespath-community/go-jmespath"
	"golang.org/x/oauth2"
)

type searchRequest struct {
	Paths map[string]string `json:"paths"` // name -> JMESPath
	Data  any               `json:"data"`
}

type request struct {
	Env          map[string]string `json:"env"`           // Grafana's environment (the rendered Deployment's)
	ClientSecret string            `json:"client_secret"` // what GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET__FILE holds
	State        string            `json:"state"`
	Code         string            `json:"code"`
}

func setting(env map[string]string, key string) string {
	return env["GF_AUTH_GENERIC_OAUTH_"+key]
}

func config(r request) *oauth2.Config {
	style := oauth2.AuthStyleAutoDetect
	switch setting(r.Env, "AUTH_STYLE") {
	case "InParams":
		style = oauth2.AuthStyleInParams
	case "InHeader":
		style = oauth2.AuthStyleInHeader
	}
	return &oauth2.Config{
		ClientID:     setting(r.Env, "CLIENT_ID"),
		ClientSecret: r.ClientSecret,
		Endpoint: oauth2.Endpoint{AuthURL: setting(r.Env, "AUTH_URL"), TokenURL: setting(r.Env, "TOKEN_URL"),
			AuthStyle: style},
		RedirectURL: strings.TrimSuffix(r.Env["GF_SERVER_ROOT_URL"], "/") + "/login/generic_oauth",
		Scopes:      strings.Fields(strings.ReplaceAll(setting(r.Env, "SCOPES"), ",", " ")),
	}
}

// searchString is pkg/util/json.go's SearchJSONForStringAttr: a string result, else "".
func searchString(path string, data any) (string, error) {
	if path == "" {
		return "", nil
	}
	value, err := jmespath.Search(path, data)
	if err != nil {
		return "", err
	}
	if s, ok := value.(string); ok {
		return s, nil
	}
	return "", nil
}

func searchStrings(path string, data any) []string {
	out := []string{}
	if path == "" {
		return out
	}
	value, err := jmespath.Search(path, data)
	if err != nil {
		return out
	}
	if list, ok := value.([]any); ok {
		for _, v := range list {
			if s, ok := v.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

func signin(r request) map[string]any {
	ctx := context.Background()
	cfg := config(r)
	token, err := cfg.Exchange(ctx, r.Code)
	if err != nil {
		return map[string]any{"error": "token exchange: " + err.Error()}
	}
	resp, err := cfg.Client(ctx, token).Get(setting(r.Env, "API_URL"))
	if err != nil {
		return map[string]any{"error": "user info: " + err.Error()}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return map[string]any{"error": fmt.Sprintf("user info: HTTP %d: %s", resp.StatusCode, body)}
	}
	var data any
	if err := json.Unmarshal(body, &data); err != nil {
		return map[string]any{"error": "user info: " + err.Error()}
	}
	// the token too, so a test can check what else it may do (nothing, it should)
	out := map[string]any{"user_info": data, "scope": token.Extra("scope"), "access_token": token.AccessToken}
	login, _ := searchString(setting(r.Env, "LOGIN_ATTRIBUTE_PATH"), data)
	name, _ := searchString(setting(r.Env, "NAME_ATTRIBUTE_PATH"), data)
	email, _ := searchString(setting(r.Env, "EMAIL_ATTRIBUTE_PATH"), data)
	out["login"], out["name"], out["email"] = login, name, email
	out["groups"] = searchStrings(setting(r.Env, "GROUPS_ATTRIBUTE_PATH"), data)
	if email == "" {
		out["error"] = "no email: Grafana would ask " + setting(r.Env, "API_URL") + "/emails"
		return out
	}
	raw, err := searchString(setting(r.Env, "ROLE_ATTRIBUTE_PATH"), data)
	if err != nil {
		out["error"] = "role_attribute_path: " + err.Error()
		return out
	}
	role, serverAdmin := "", false
	if strings.EqualFold(raw, "GrafanaAdmin") {
		role, serverAdmin = "Admin", setting(r.Env, "ALLOW_ASSIGN_GRAFANA_ADMIN") == "true"
	} else if raw != "" {
		role = strings.ToUpper(raw[:1]) + strings.ToLower(raw[1:])
		switch role {
		case "Admin", "Editor", "Viewer", "None":
		default:
			out["error"] = "invalid role: " + raw
			return out
		}
	}
	if role == "" && setting(r.Env, "ROLE_ATTRIBUTE_STRICT") == "true" {
		out["error"] = "idP did not return a role attribute, but role_attribute_strict is set"
		return out
	}
	out["role"], out["grafana_admin"] = role, serverAdmin
	return out
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "search" {
		// each path as SearchJSONForStringAttr evaluates it (a string result, else "")
		var q searchRequest
		if json.NewDecoder(os.Stdin).Decode(&q) != nil {
			fmt.Fprintln(os.Stderr, "search: stdin is not {paths, data}")
			os.Exit(2)
		}
		out := map[string]any{}
		for name, path := range q.Paths {
			value, err := searchString(path, q.Data)
			if err != nil {
				fmt.Fprintln(os.Stderr, name+": "+err.Error())
				os.Exit(1)
			}
			out[name] = value
		}
		_ = json.NewEncoder(os.Stdout).Encode(out)
		return
	}
	var r request
	if len(os.Args) != 2 || json.NewDecoder(os.Stdin).Decode(&r) != nil {
		fmt.Fprintln(os.Stderr, "usage: grafana-oauth authorize|signin|search < request.json")
		os.Exit(2)
	}
	var out map[string]any
	switch os.Args[1] {
	case "authorize":
		out = map[string]any{"url": config(r).AuthCodeURL(r.State)}
	case "signin":
		out = signin(r)
	default:
		fmt.Fprintln(os.Stderr, "usage: grafana-oauth authorize|signin < request.json")
		os.Exit(2)
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}
