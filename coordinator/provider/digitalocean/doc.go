// Package digitalocean is the provider of `--provider digitalocean`: the
// cluster's nodes are DigitalOcean droplets that boot cloudml-agent from
// cloud-init user-data (coordinator/cloudinit) and join the coordinator
// with no SSH session. It talks to the API with godo; the tests talk to
// internal/dofake, an API test server with fault injection.
//
// # What a droplet is made of
//
// Config.Region, the request's size (default Config.Size), Config.Image
// (Ubuntu 24.04 LTS by default), the SSH keys named (none by default), the
// cluster's VPC (vpc.go, made by Prepare, whose ip_range the agents open
// the swarm ports to when ufw is on), and three tags:
// "cloudml-cluster:<cluster>", "cloudml-pool:<pool>" and
// "cloudml-req:<request id>" (DigitalOcean tags are ^[a-zA-Z0-9_\-:]+$;
// the names fit by construction). The first puts it behind the cluster's
// Cloud Firewall (firewall.go: inbound only from the cluster's droplets,
// made before the first droplet). Its user-data holds the coordinator's
// advertise address, CA, the agent's download URL and SHA-256, and one
// single-use join token minted for that droplet alone: its label (TokenLabel) names the cluster, the request and the
// droplet's name, which VerifyNode checks when the droplet registers.
// Never the API token.
//
// # Never a leaked droplet
//
// The API has no idempotency key, and godo's retrying transport resends a
// POST whose answer was lost. So creates go through a client that never
// retries, and Create retries a create itself only after listing the
// request's droplets (by its tag) and finding none with that name. Every
// other call goes through godo's retrying transport (429 and 5xx,
// honouring Retry-After). Delete counts a droplet as gone only when the
// API answers 404 for it, sending failed DELETEs again until its deadline;
// List shows every droplet with the cluster's tag, GPU droplets included.
//
// # Money
//
// Config.MaxHourlyCost refuses a create that would bring the cluster's
// droplets (and creates under way) past it, at the list prices of the
// sizes API; DryRun reports what a create would make and cost, with its
// user-data (token masked), and creates nothing.
//
// # Least privilege
//
// A custom-scope token needs: account:read, regions:read, sizes:read,
// droplet:create, droplet:read, droplet:delete, tag:create, tag:read,
// vpc:read and vpc:create (vpc:create only without Config.VPC), and
// firewall:create, firewall:read and firewall:update (none of them without
// Config.Firewall).
package digitalocean
