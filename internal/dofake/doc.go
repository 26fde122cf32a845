// Package dofake is an in-process DigitalOcean API v2 server for tests: the
// digitalocean provider, its leak and security tests and `make demo-do`
// talk to it with the real godo client, since no DigitalOcean account is
// reachable here. It also serves each droplet's metadata service, and with
// a Booter each droplet becomes a real machine (a network-namespace node
// that boots its user-data).
//
//	s, err := dofake.Start(dofake.DefaultConfig()) // 127.0.0.1:0, token DefaultToken
//	defer s.Close()
//	hc := oauth2.NewClient(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: s.Token()}))
//	c, err := godo.New(hc, godo.SetBaseURL(s.URL()))   // add godo.WithRetryAndBackoffs(...) as the provider does
//
// Pass an oauth2 client: godo.New(http.DefaultClient, WithRetryAndBackoffs)
// panics. The server is served at the root because godo's VPC paths are
// absolute (/v2/vpcs).
//
// # Endpoints (shapes checked against godo v1.243.0's types)
//
//	POST   /v2/droplets                  202 {"droplet":{..},"links":{"actions":[..]}}, or with names (≤ 10) {"droplets":[..]}
//	GET    /v2/droplets/{id}             200 {"droplet":{..}}; 404 once gone
//	GET    /v2/droplets[?tag_name=|name=][&type=gpus]  paged; tag_name with name is 400
//	DELETE /v2/droplets/{id}             204; 404 for an unknown id
//	DELETE /v2/droplets?tag_name=        204 (also for a tag no droplet has); 422 for an invalid tag
//	GET    /v2/sizes, /v2/regions        paged catalog (DefaultSizes, DefaultRegions)
//	GET    /v2/account                   droplet_limit from Config.DropletLimit
//	POST   /v2/tags                      201; GET /v2/tags/{name}; POST and DELETE /v2/tags/{name}/resources 204
//	GET    /v2/vpcs, POST /v2/vpcs (201), GET /v2/vpcs/{id}
//	GET    /v2/firewalls (paged), POST /v2/firewalls (202), GET, PUT (200) and DELETE (204) /v2/firewalls/{id}
//
// Every API request needs "Authorization: Bearer <Config.Token>", else 401
// {"id":"Unauthorized",..}. Errors are {"id","message","request_id"} with
// the request id also in X-Request-Id. Lists take page and per_page (default
// 20, at most 200: larger is cut to 200) and answer links.pages (absolute
// first/prev/next/last URLs, absent on a single page) and meta.total.
// Every API answer carries ratelimit-limit, ratelimit-remaining (counting
// down over an hour) and ratelimit-reset (unix seconds);
// Config.EnforceRateLimit answers 429 once the hour's budget is spent.
//
// A create is checked as the API does and refused with 422 for: a name
// that is not a hostname, an unknown or unavailable region, a size that is
// unknown or not offered in the region, an image that is neither a known
// slug nor id, user_data over 64 KiB, a tag outside ^[a-zA-Z0-9_\-:]+$ (or
// over 255 characters), a vpc_uuid that does not exist or lies in another
// region, an SSH key (id or fingerprint) not in Config.SSHKeys, or more
// droplets than the account's limit. A create without vpc_uuid joins its
// region's default VPC. Its tags then exist as tags.
//
// A firewall create or update (a PUT replaces the whole firewall: a field
// left out is emptied) is refused with 422 for: a name that does not start
// with a letter or digit or holds anything but letters, digits, '.' and
// '-'; no rule at all, or more than 50; more than 5 tags or 10 droplets; a
// tag or droplet id, in the firewall or in a rule's sources or
// destinations, that does not exist (tags must exist first: POST
// /v2/tags, or a droplet created with them); a protocol other than tcp,
// udp or icmp; tcp or udp ports other than "all", "0", "N" or "N-M". The
// server stores protocols in lowercase, "all" (and an ICMP rule's ports)
// as "0" and a missing action as "allow", as the API does. Names need not
// be unique, so a lost create answer and a blind retry make two
// firewalls. Rules are recorded, not enforced (Server.Firewalls).
//
// # Droplet lifecycle
//
// A created droplet is "new" with empty networks.v4. After
// Config.ActiveDelay its lifecycle calls Config.Booter.Boot (if any) with
// the droplet and its user-data; when Boot returns, the droplet turns
// "active" with a public and a private IPv4 address: the ones Boot
// returned, or the next free ones of Config.PublicPrefix (198.18.0.0/15;
// .1 is the gateway) and of its VPC's ip_range (.1 is the gateway). A
// failed Boot leaves it "new" (Stats.BootFailures). A DELETE cancels a
// pending boot and calls Booter.Halt once Boot has returned; Close does the
// same for every droplet left. With Config.DeleteLag the droplet stays
// visible (locked, its status unchanged) that long after the 204, so a
// caller must wait for the 404; a second DELETE meanwhile answers 204.
//
// # Metadata service
//
// The real service answers every droplet at the same 169.254.169.254 and
// tells them apart by where the request comes from. Tests have two ways to
// reach a droplet's:
//
//   - By path, for in-process tests where every request comes from
//     127.0.0.1: Droplet.MetadataURL is <URL>droplet/{id}, under which
//     /metadata/v1/... and /metadata/v1.json answer for that droplet.
//   - By source address, for nodes in network namespaces: /metadata/v1/...
//     on the API listener, and on the metadata-only listener
//     Config.MetadataAddr (for example the bridge address, or
//     169.254.169.254:80 put on the bridge), answers for the droplet whose
//     public or private address equals the request's source address, 404
//     for any other. The node's agent takes the metadata base URL as a
//     setting whose default is http://169.254.169.254.
//
// Served: the index /metadata/v1/ (an index asked for without its slash
// answers 301 to it), id, hostname, user-data, vendor-data (empty),
// public-keys (of the create's SSH keys), region, tags/ (one a line),
// interfaces/{public,private}/0/{mac,type,ipv4/{address,netmask,gateway}},
// dns/nameservers, floating_ip/, reserved_ip/, features/, and everything
// as one JSON object at /metadata/v1.json (droplet_id, hostname,
// user_data, region, interfaces, tags, ...). It needs no token. A deleted
// droplet's metadata is 404.
//
// # Faults
//
// Inject(endpoint, Fault) makes an endpoint misbehave, counted per fault
// (Injection.Fired, FiredAt) and per endpoint (Stats.Faults):
//
//   - Status 500/502/503: an error instead of the answer, with no effect.
//   - Status 429 with RetryAfter: Retry-After in whole seconds,
//     ratelimit-remaining 0 and a reset time; godo's retrying client waits
//     that long.
//   - Drop: the connection is closed with no answer. Go's transport
//     resends a GET or DELETE on its own when the connection was reused,
//     so a Drop shows best on a POST.
//   - AfterEffect with Status or Drop: the request takes effect (the
//     droplet is created, the delete done) and its answer is lost. Beware:
//     godo's retrying client resends a POST after a lost answer, so a
//     blind retry makes a second droplet; list by the request's tag first.
//   - Delay: a slow answer, before the request takes effect; a client
//     that gives up first leaves no effect.
//   - Skip and Times: which matching requests are affected. An
//     endpoint's faults apply in turn; ClearFaults removes them.
//
// A zero Fault with Times 1 affects nothing but records when the request
// came (FiredAt), which is how the tests check that godo waited out a
// Retry-After.
//
// # What is not modelled
//
// Droplet actions, SSH key, image and project endpoints, the firewall's
// droplets, tags and rules sub-endpoints, enforcing firewall rules, IPv6,
// the per-minute rate limit, and what the real API answers to a few edge
// cases (a second DELETE of a droplet being deleted, a POST /v2/tags of an
// existing tag) are this server's choices, marked in the code.
package dofake
