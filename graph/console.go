package graph

import (
	"net/http"
	"strings"

	"github.com/99designs/gqlgen/graphql/playground"
)

// DefaultConsoleAssetBaseURL is where the console loads GraphiQL and React from when no base
// URL is configured.
const DefaultConsoleAssetBaseURL = "https://cdn.jsdelivr.net/npm"

// The console's assets as paths under the asset base URL, laid out as on the npm CDN, with the
// versions and Subresource Integrity hashes gqlgen v0.17.98's playground pins. An air-gapped
// install mirrors these four files under the same relative paths on any static server (or
// under a path of the control plane's own router) and passes that server's URL as
// assetBaseURL, for example:
//
//	for f in graphiql@4.1.2/graphiql.min.js graphiql@4.1.2/graphiql.min.css \
//	         react@18.2.0/umd/react.production.min.js \
//	         react-dom@18.2.0/umd/react-dom.production.min.js; do
//	  curl -fsSL --create-dirs -o "assets/$f" "https://cdn.jsdelivr.net/npm/$f"
//	done
//
// The integrity hashes stay valid because the files are byte-for-byte the same; a browser
// refuses a tampered or different file.
const (
	graphiqlJS  = "graphiql@4.1.2/graphiql.min.js"
	graphiqlJSI = "sha256-hnImuor1znlJkD/FOTL3jayfS/xsyNoP04abi8bFJWs="
	graphiqlCSS = "graphiql@4.1.2/graphiql.min.css"
	graphiqlCSI = "sha256-MEh+B2NdMSpj9kexQNN3QKc8UzMrCXW/Sx/phcpuyIU="
	reactJS     = "react@18.2.0/umd/react.production.min.js"
	reactJSI    = "sha256-S0lp+k7zWUMk2ixteM6HZvu8L9Eh//OVrt+ZfbCpmgY="
	reactDOMJS  = "react-dom@18.2.0/umd/react-dom.production.min.js"
	reactDOMJSI = "sha256-IXWO0ITNDjfnNXIu5POVfqlgYoop36bDzhodR6LW5Pc="
)

// ConsoleHandler serves the GraphQL console (GraphiQL, through gqlgen's playground handler)
// talking to endpoint, with its scripts and stylesheet loaded from assetBaseURL ("" means
// DefaultConsoleAssetBaseURL). The playground's WithGraphiqlVersion and
// WithGraphiqlReactVersion options replace its built-in CDN URLs, so no template is copied.
func ConsoleHandler(endpoint, assetBaseURL string) http.Handler {
	base := strings.TrimRight(assetBaseURL, "/")
	if base == "" {
		base = DefaultConsoleAssetBaseURL
	}
	at := func(p string) string { return base + "/" + p }
	return playground.Handler("Backup Repository console", endpoint,
		playground.WithGraphiqlVersion(at(graphiqlJS), at(graphiqlCSS), graphiqlJSI, graphiqlCSI),
		playground.WithGraphiqlReactVersion(at(reactJS), at(reactDOMJS), reactJSI, reactDOMJSI),
		playground.WithStoragePrefix("backuprepo-"),
	)
}
