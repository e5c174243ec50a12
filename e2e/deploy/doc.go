// Package deploy holds the tests that prove every file in deploy/ works: the images build and
// run, nginx accepts its configuration and streams a large upload without spooling it, the
// systemd units verify, and the compose file and Kubernetes manifests decode strictly and name
// only real settings.
package deploy
