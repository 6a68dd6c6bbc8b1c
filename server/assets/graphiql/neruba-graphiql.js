// Neruba's GraphiQL: queries and mutations to POST /graphql, subscriptions over the websocket at
// /graphql/ws (graphql-transport-ws). Everything it loads comes from this server, so it works
// offline. The key goes in the Headers tab as {"Authorization": "Bearer nrb_…"}; the websocket
// sends the same value in its connection_init payload (browsers cannot set headers on sockets).
(function () {
  "use strict";

  var DEFAULT_QUERY = [
    "# Welcome to Neruba. Put your API key in the Headers tab below:",
    '#   {"Authorization": "Bearer nrb_…"}',
    "# (`neruba serve --demo` prints one), then run this with Ctrl-Enter.",
    "",
    "query Viewer {",
    "  viewer {",
    "    kind",
    "    scopes",
    "    project { id name }",
    "  }",
    "}",
    "",
    "# A demo customer's wallets and October usage (uncomment, then pick the operation to run):",
    "#",
    "# query CustomerWallets {",
    '#   customer(externalId: "acme") {',
    "#     externalId",
    "#     wallets(first: 10) { nodes { id balance { amount formatted } } }",
    '#     usage(metric: "api_calls", from: "2026-10-01T00:00:00Z", to: "2026-11-01T00:00:00Z") { value }',
    "#   }",
    "# }",
    "#",
    "# Live balance changes (a subscription, over /graphql/ws):",
    "#",
    "# subscription Balances {",
    "#   balanceChanged { kind walletId balance { formatted } delta { amount } cause }",
    "# }",
    "",
  ].join("\n");

  // The headers GraphiQL last sent, so the websocket can authenticate with the same key.
  var lastHeaders = {};
  function authorization() {
    for (var name in lastHeaders) {
      if (name.toLowerCase() === "authorization") return { authorization: lastHeaders[name] };
    }
    return {};
  }

  function absolute(path, socket) {
    var url = new URL(path, window.location.href);
    if (socket) url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.toString();
  }

  var inner = GraphiQL.createFetcher({
    url: absolute("/graphql", false),
    subscriptionUrl: absolute("/graphql/ws", true),
    wsConnectionParams: authorization,
    headers: { Accept: "application/graphql-response+json, application/json;q=0.9" },
  });
  function fetcher(params, options) {
    lastHeaders = (options && options.headers) || {};
    return inner(params, options);
  }

  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: DEFAULT_QUERY,
      defaultHeaders: '{\n  "Authorization": "Bearer nrb_your_key"\n}',
      defaultEditorToolsVisibility: "headers",
      shouldPersistHeaders: true,
    })
  );
})();
