// Package cloudinit renders the cloud-init user-data with which a cloud
// provider (DigitalOcean first) creates a CloudML node, so the machine
// joins the cluster with no SSH session.
//
// The user-data (#cloud-config) writes four files and runs one script:
//
//   - CACertPath: the coordinator's CA certificate (public);
//   - TokenPath (root, 0600): the machine's single-use join token, which
//     pins the CA and expires within minutes;
//   - UnitPath: a systemd unit that runs cloudml-agent with --token-file
//     and its flags, Restart=always;
//   - ScriptPath, run by runcmd: installs docker.io when the image has no
//     docker, downloads the agent from the coordinator's download endpoint
//     (coordinator/download.go) with curl --cacert CACertPath, checks its
//     SHA-256 against the one in the user-data, installs it at AgentPath
//     and starts the unit.
//
// Every process on a droplet can read its user-data (the metadata service
// serves it), so it holds only public things (the coordinator's address,
// its CA, the agent's URL and hash, the agent's flags) and the one join
// token, which the agent has used up before any job runs on the machine.
// Never a cloud API token, a bucket credential, a swarm join token or a
// private key: the tests check it. UserData.Masked is the rendering with
// the token's secret masked, for dry runs and logs; a UserData prints
// masked.
//
// Parse reads a rendering back (the DigitalOcean test server boots its
// fake droplets from it). The rendering passes Debian's
// `cloud-init schema --config-file`; since that accepts unknown top-level
// keys, the tests also check each key against cloud-init's schema.
package cloudinit
