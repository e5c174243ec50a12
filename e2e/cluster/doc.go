// Package cluster is the dockertest end-to-end suite of SPEC §6: three data nodes in containers
// built from deploy/docker, on a private Docker network, with the control plane running on the
// host, driven through failures (node loss, partition, control-plane restart, drain, two
// control-plane replicas).
//
// The control plane runs as a host process rather than a container: PostgreSQL and Redis are
// the host's throwaway servers (TEST_DATABASE_URL, TEST_REDIS_URL), listening on 127.0.0.1
// only, which a container could not reach. The host is a member of the Docker network through
// the bridge's gateway address: the control plane listens (HTTP and gossip) and advertises
// there, the containers reach it there, and the host reaches every container at its own fixed
// address on the network (the network has a subnet of its own and each data node a static
// address, so a node keeps its address across `docker kill` and start, as its gossip
// advertisement and public URL require).
//
// Each data node's disk is a host directory bind-mounted into the container, so the suite reads
// what is stored directly (the images are FROM scratch: there is no shell to `docker exec`).
// The full-disk scenario (TestFullDisk, issue 6) adds a node whose disk is a small tmpfs inside
// its container instead, which the suite reads through /proc/<pid>/root of the node's process.
package cluster
